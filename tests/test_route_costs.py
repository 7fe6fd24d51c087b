"""Costs declared on routes by the framework helpers: charged by the middleware before the
route runs, to the rate limit and the credits, and given back in full when the route's scopes
refuse the key."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Security
from flask import Flask
from flask.views import MethodView
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from keysentry import ASGIMiddleware, Keysentry, MemoryLimiter, MemoryStore
from keysentry.fastapi import FastAPIKeys
from keysentry.flask import KeysentryFlask, requires_scopes
from keysentry.starlette import Scopes

from .conftest import SECRET


def _guard() -> Keysentry:
    return Keysentry(MemoryStore(), secret=SECRET, limiter=MemoryLimiter(), usage_interval=None)


def starlette_app(ks: Keysentry) -> Starlette:
    scopes = Scopes(ks)

    @scopes.require("generate", cost=5)
    async def generate(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @scopes.require(cost=3)
    def sync_generate(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def cheap(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    class Images(HTTPEndpoint):
        @scopes.require("generate", cost=4)
        async def post(self, request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

        async def get(self, request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/generate", generate),
            Route("/sync", sync_generate),
            Route("/cheap", cheap),
            Mount("/v2", routes=[Route("/images/{size}", Images)]),
        ]
    )
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    return app


def fastapi_app(ks: Keysentry) -> FastAPI:
    auth = FastAPIKeys(ks)
    app = FastAPI()
    auth.init_app(app)

    # Under `from __future__ import annotations`, FastAPI reads an annotation from the
    # module's globals: a dependency made here goes in dependencies=[...].
    @app.get("/generate", dependencies=[Security(auth.require("generate", cost=5))])
    async def generate() -> dict[str, bool]:
        return {"ok": True}

    router = APIRouter(dependencies=[Depends(auth.require(cost=3))])

    @router.get("/sync")
    def sync_generate() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(router)

    @app.get("/cheap")
    async def cheap() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v2/images/{size}", dependencies=[Security(auth.require("generate", cost=4))])
    async def images(size: str) -> dict[str, bool]:
        return {"ok": True}

    return app


def flask_app(ks: Keysentry) -> Flask:
    app = Flask(__name__)
    KeysentryFlask(ks, app)

    @app.get("/generate")
    @requires_scopes("generate", cost=5)
    def generate() -> Any:
        return {"ok": True}

    @app.get("/sync")
    @requires_scopes(cost=3)
    def sync_generate() -> Any:
        return {"ok": True}

    @app.get("/cheap")
    def cheap() -> Any:
        return {"ok": True}

    class Images(MethodView):
        @requires_scopes("generate", cost=4)
        def post(self, size: str) -> Any:
            return {"ok": True}

    app.add_url_rule("/v2/images/<size>", view_func=Images.as_view("images"))
    return app


BUILDERS = {"starlette": starlette_app, "fastapi": fastapi_app, "flask": flask_app}


class Client:
    def __init__(self, framework: str, ks: Keysentry) -> None:
        app = BUILDERS[framework](ks)
        self.flask = framework == "flask"
        self.client: Any = app.test_client() if self.flask else TestClient(app)

    def call(self, method: str, path: str, key: str) -> tuple[int, str | None, Any]:
        r = self.client.open(path, method=method, headers={"X-API-Key": key}) if self.flask \
            else self.client.request(method, path, headers={"X-API-Key": key})  # fmt: skip
        body = r.get_json() if self.flask else r.json()
        code = body["error"]["code"] if r.status_code >= 400 else None
        return r.status_code, code, r.headers.get("RateLimit")


@pytest.mark.parametrize("framework", list(BUILDERS))
def test_a_route_cost_is_charged_to_the_rate_limit(framework: str) -> None:
    ks = _guard()
    client = Client(framework, ks)
    key = ks.issue(name="gen", scopes=["generate"], rate_limit="12/minute").key.reveal()
    status, _, fields = client.call("GET", "/generate", key)
    assert status == 200
    assert fields.startswith('"per-minute";r=7;')  # 12 - 5
    assert client.call("GET", "/sync", key)[2].startswith('"per-minute";r=4;')  # - 3
    assert client.call("POST", "/v2/images/hd", key)[2].startswith('"per-minute";r=0;')  # - 4
    assert client.call("GET", "/generate", key)[:2] == (429, "RATE_LIMITED")


@pytest.mark.parametrize("framework", list(BUILDERS))
def test_a_route_cost_is_charged_to_credits_and_given_back_on_a_scope_refusal(
    framework: str,
) -> None:
    ks = _guard()
    client = Client(framework, ks)
    writer = ks.issue(name="w", scopes=["generate"], credits=9, rate_limit="none")
    reader = ks.issue(name="r", scopes=["read"], credits=9, rate_limit="none")
    assert client.call("GET", "/generate", writer.key.reveal())[0] == 200
    assert ks.get(writer.record.id).credits == 4
    assert client.call("GET", "/generate", writer.key.reveal())[:2] == (
        402,
        "INSUFFICIENT_CREDITS",
    )
    assert client.call("GET", "/cheap", writer.key.reveal())[0] == 200  # costs 1
    assert ks.get(writer.record.id).credits == 3
    # A key without the route's scope is refused there and charged nothing.
    assert client.call("GET", "/generate", reader.key.reveal())[:2] == (403, "INSUFFICIENT_SCOPE")
    assert client.call("POST", "/v2/images/hd", reader.key.reveal())[0] == 403
    assert ks.get(reader.record.id).credits == 9


def test_a_route_cost_must_be_a_positive_whole_number() -> None:
    scopes = Scopes(_guard())
    with pytest.raises(ValueError, match="cost"):
        scopes.require("read", cost=0)
    with pytest.raises(TypeError, match="cost"):
        requires_scopes("read", cost=2.5)  # type: ignore[arg-type]
