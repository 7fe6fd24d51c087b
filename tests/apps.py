"""One small protected API in each framework, and a client with one interface for all four.

Every app answers:
  GET /             the identity keysentry handed the app (id, name, owner, scopes)
  GET /health       {"ok": true}         (exempt in the default fixture)
  GET /public/page  {"ok": true}         (under an exempt subtree)
  GET /headers      which credential headers the app saw (for strip_credentials)
  GET /{anything}   the path, so a request that passes auth is visible as 200
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request

from keysentry import ASGIMiddleware, Keysentry, WSGIMiddleware


@dataclass
class Result:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    @property
    def message(self) -> str:
        return self.body["error"]["message"]


def _identity(api_key: Any) -> dict[str, Any]:
    return {
        "id": api_key.id,
        "name": api_key.name,
        "owner": api_key.owner,
        "scopes": sorted(api_key.scopes),
        "metadata": dict(api_key.metadata),
    }


def starlette_app(ks: Keysentry) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def identity(request: Request) -> JSONResponse:
        return JSONResponse(_identity(request.state.api_key))

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def headers(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "authorization": request.headers.get("authorization"),
                "x-api-key": request.headers.get("x-api-key"),
            }
        )

    async def anything(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(_identity(websocket.state.api_key))
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/", identity),
            Route("/health", ok),
            Route("/public/page", ok),
            Route("/headers", headers),
            WebSocketRoute("/ws", ws),
            Route("/{path:path}", anything),
        ]
    )
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    return app


def fastapi_app(ks: Keysentry) -> Any:
    app = FastAPI()

    @app.get("/")
    async def identity(request: Request) -> dict[str, Any]:
        return _identity(request.state.api_key)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/public/page")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/headers")
    async def headers(request: Request) -> dict[str, str | None]:
        return {
            "authorization": request.headers.get("authorization"),
            "x-api-key": request.headers.get("x-api-key"),
        }

    @app.get("/{path:path}")
    async def anything(path: str) -> dict[str, str]:
        return {"path": "/" + path}

    app.add_middleware(ASGIMiddleware, keysentry=ks)
    return app


def flask_app(ks: Keysentry) -> Any:
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.get("/")
    def identity() -> Any:
        return jsonify(_identity(request.environ["keysentry.api_key"]))

    @app.get("/health")
    @app.get("/public/page")
    def ok() -> Any:
        return jsonify({"ok": True})

    @app.get("/headers")
    def headers() -> Any:
        return jsonify(
            {
                "authorization": request.headers.get("authorization"),
                "x-api-key": request.headers.get("x-api-key"),
            }
        )

    @app.get("/<path:path>")
    def anything(path: str) -> Any:
        return jsonify({"path": "/" + path})

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)  # type: ignore[method-assign]
    return app


def werkzeug_app(ks: Keysentry) -> Any:
    """A bare PEP 3333 app: no framework, werkzeug's Request/Response only."""
    import json

    from werkzeug.wrappers import Request, Response

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        path = request.path
        if path == "/":
            body = _identity(request.environ["keysentry.api_key"])
        elif path in ("/health", "/public/page"):
            body = {"ok": True}
        elif path == "/headers":
            body = {
                "authorization": request.headers.get("authorization"),
                "x-api-key": request.headers.get("x-api-key"),
            }
        else:
            body = {"path": path}
        return Response(json.dumps(body), mimetype="application/json")

    return WSGIMiddleware(app, ks)


class Client:
    """``get(path, headers) -> Result`` over each framework's own test client."""

    def __init__(self, framework: str, ks: Keysentry) -> None:
        self.framework = framework
        self.app = BUILDERS[framework](ks)
        self.asgi = framework in ("starlette", "fastapi")
        if self.asgi:
            from starlette.testclient import TestClient

            self._client: Any = TestClient(self.app)
        else:
            from werkzeug.test import Client as WerkzeugClient

            self._client = WerkzeugClient(self.app)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> Result:
        if self.asgi:
            r = self._client.request(method, path, headers=headers, **kwargs)
            try:
                body = r.json()
            except ValueError:
                body = r.text
            return Result(r.status_code, r.headers, body)
        r = self._client.open(path, method=method, headers=headers or {}, **kwargs)
        body = r.get_json(silent=True) if r.is_json else r.get_data(as_text=True)
        return Result(r.status_code, r.headers, body)

    def get(
        self, path: str, headers: Mapping[str, str] | list[tuple[str, str]] | None = None
    ) -> Result:
        return self.request("GET", path, headers)


BUILDERS: dict[str, Callable[[Keysentry], Any]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "flask": flask_app,
    "werkzeug": werkzeug_app,
}
FRAMEWORKS = list(BUILDERS)
