"""Route scopes (SPEC §1, §5): a route declares the scopes it needs, in each framework's idiom.

The same small API in Starlette (``Scopes(ks).require``), FastAPI (``FastAPIKeys(ks).require``
as a dependency) and Flask (``@requires_scopes`` with the ``KeysentryFlask`` extension):

  GET  /read     needs "read"             (async where the framework has async endpoints)
  GET  /sync     needs "read"             (a sync endpoint)
  GET  /both     needs "read" and "write"
  GET  /any      needs a key, any scopes
  GET  /health   needs "read", but the path is exempt: no key ever authenticates it

driven through each framework's own test client. No ``from __future__ import annotations``
here: FastAPI reads the dependencies from the annotations of routes declared in a function.
"""

import asyncio
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Security, WebSocket
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse

from keysentry import ASGIMiddleware, Denial, KeyIdentity, Keysentry, MemoryStore
from keysentry.fastapi import FastAPIKeys, Refused
from keysentry.flask import KeysentryFlask, current_key, requires_scopes
from keysentry.starlette import Scopes

from .apps import Result
from .conftest import SECRET
from .raw import asgi_call

EXEMPT = ["/health", "/docs/*", "/openapi.json"]
#: What each security scheme's description adds under the default scope implications.
ADMIN = " Scopes imply others: `admin` grants every scope."


def _who(key: Any) -> dict[str, Any]:
    return {"id": key.id, "scopes": sorted(key.scopes)}


def starlette_app(ks: Keysentry) -> Starlette:
    scopes = Scopes(ks)

    @scopes.require("read")
    async def read(request: Request) -> JSONResponse:
        return JSONResponse(_who(request.state.api_key))

    @scopes.require("read")
    def sync(request: Request) -> JSONResponse:
        return JSONResponse(_who(request.state.api_key))

    @scopes.require("read", "write")
    async def both(request: Request) -> JSONResponse:
        return JSONResponse(_who(request.state.api_key))

    @scopes.require()
    async def any_key(request: Request) -> JSONResponse:
        return JSONResponse(_who(request.state.api_key))

    @scopes.require("read")
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    class Items(HTTPEndpoint):
        @scopes.require("read")
        async def get(self, request: Request) -> PlainTextResponse:
            return PlainTextResponse("listed")

        @scopes.require("write")
        def post(self, request: Request) -> PlainTextResponse:
            return PlainTextResponse("created", status_code=201)

    @scopes.require("write")
    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_json(_who(websocket.state.api_key))
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/read", read),
            Route("/sync", sync),
            Route("/both", both),
            Route("/any", any_key),
            Route("/health", health),
            Route("/items", Items, methods=["GET", "POST"]),
            WebSocketRoute("/ws", ws),
        ]
    )
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    return app


def fastapi_app(ks: Keysentry) -> FastAPI:
    auth = FastAPIKeys(ks)
    app = FastAPI()
    auth.init_app(app)
    reader = Annotated[KeyIdentity, Security(auth.require("read"))]

    @app.get("/read")
    async def read(key: reader) -> dict[str, Any]:
        return _who(key)

    @app.get("/sync")
    def sync(key: reader) -> dict[str, Any]:
        return _who(key)

    @app.get("/both")
    async def both(
        key: Annotated[KeyIdentity, Security(auth.require("read", "write"))],
    ) -> dict[str, Any]:
        return _who(key)

    @app.get("/any")
    async def any_key(key: Annotated[KeyIdentity, Depends(auth.require())]) -> dict[str, Any]:
        return _who(key)

    @app.get("/health", dependencies=[Security(auth.require("read"))])
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"ok": True}

    admin = APIRouter(dependencies=[Security(auth.require("admin"))])

    @admin.get("/admin/stats")
    async def stats() -> dict[str, int]:
        return {"keys": 1}

    app.include_router(admin)

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket, key: Annotated[KeyIdentity, Depends(auth.require("write"))]
    ) -> None:
        await websocket.accept()
        await websocket.send_json(_who(key))
        await websocket.close()

    return app


def flask_app(ks: Keysentry) -> Any:
    from flask import Flask
    from flask.views import MethodView

    app = Flask(__name__)
    KeysentryFlask(ks, app)

    @app.get("/read")
    @requires_scopes("read")
    def read() -> dict[str, Any]:
        return _who(current_key)

    @app.get("/sync")
    @requires_scopes("read")
    def sync() -> dict[str, Any]:
        return _who(current_key)

    @app.get("/both")
    @requires_scopes("read", "write")
    def both() -> dict[str, Any]:
        return _who(current_key)

    @app.get("/any")
    @requires_scopes()
    def any_key() -> dict[str, Any]:
        return _who(current_key)

    @app.get("/health")
    @requires_scopes("read")
    def health() -> dict[str, bool]:
        return {"ok": True}

    class Items(MethodView):
        @requires_scopes("read")
        def get(self) -> tuple[str, int]:
            return "listed", 200

        @requires_scopes("write")
        def post(self) -> tuple[str, int]:
            return "created", 201

    app.add_url_rule("/items", view_func=Items.as_view("items"))
    return app


BUILDERS: dict[str, Callable[[Keysentry], Any]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "flask": flask_app,
}


class Client:
    """``request(method, path, key) -> Result`` over the framework's own test client."""

    def __init__(self, framework: str, ks: Keysentry) -> None:
        self.app = BUILDERS[framework](ks)
        self.asgi = framework != "flask"
        self._client: Any = TestClient(self.app) if self.asgi else self.app.test_client()

    def request(self, method: str, path: str, key: str | None = None) -> Result:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        if self.asgi:
            r = self._client.request(method, path, headers=headers)
            body = r.json() if r.headers.get("content-type") == "application/json" else r.text
            return Result(r.status_code, r.headers, body)
        r = self._client.open(path, method=method, headers=headers)
        body = r.get_json() if r.is_json else r.get_data(as_text=True)
        return Result(r.status_code, r.headers, body)

    def get(self, path: str, key: str | None = None) -> Result:
        return self.request("GET", path, key)


@pytest.fixture
def ks(store: MemoryStore) -> Keysentry:
    return Keysentry(store, secret=SECRET, exempt=EXEMPT)


@pytest.fixture(params=list(BUILDERS))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(framework: str, ks: Keysentry) -> Client:
    return Client(framework, ks)


@pytest.fixture
def issue(ks: Keysentry) -> Callable[..., str]:
    def issue(*scopes: str) -> str:
        return ks.issue(name="scoped", scopes=scopes).key.reveal()

    return issue


def _insufficient(r: Result, required: list[str]) -> None:
    assert r.status == 403, r.body
    assert r.body["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert r.body["error"]["details"] == {"required": required}
    assert r.body["success"] is False
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="api", error="insufficient_scope", scope="{" ".join(required)}"'
    )
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/read", "/sync"])
def test_a_key_with_the_scope_reaches_the_route(
    client: Client, issue: Callable[..., str], path: str
) -> None:
    r = client.get(path, issue("read"))
    assert r.status == 200
    assert r.body["scopes"] == ["read"]


@pytest.mark.parametrize("path", ["/read", "/sync"])
def test_a_key_without_the_scope_is_403_with_the_rfc_6750_challenge(
    client: Client, issue: Callable[..., str], path: str
) -> None:
    _insufficient(client.get(path, issue("write")), ["read"])
    _insufficient(client.get(path, issue()), ["read"])


def test_every_scope_a_route_declares_is_required(
    client: Client, issue: Callable[..., str]
) -> None:
    _insufficient(client.get("/both", issue("read")), ["read", "write"])
    _insufficient(client.get("/both", issue("write")), ["read", "write"])
    r = client.get("/both", issue("read", "write", "admin"))
    assert r.status == 200
    assert r.body["scopes"] == ["admin", "read", "write"]


def test_a_route_without_scopes_takes_any_valid_key(
    client: Client, issue: Callable[..., str]
) -> None:
    assert client.get("/any", issue()).status == 200


@pytest.mark.parametrize("path", ["/read", "/sync"])
def test_a_scope_refusal_gives_back_the_credit_the_middleware_took(
    client: Client, ks: Keysentry, path: str
) -> None:
    """Credits pay for what a key may do: a 403 for a missing scope costs nothing."""
    reader = ks.issue(name="metered", scopes=["read"], credits=2)
    writer = ks.issue(name="metered", scopes=["write"], credits=2)
    for _ in range(3):
        _insufficient(client.get(path, writer.key.reveal()), ["read"])
    assert ks.get(writer.record.id).credits == 2
    assert client.get(path, reader.key.reveal()).status == 200
    assert client.get(path, reader.key.reveal()).status == 200
    r = client.get(path, reader.key.reveal())
    assert (r.status, r.code) == (402, "INSUFFICIENT_CREDITS")
    assert ks.get(reader.record.id).credits == 0


def test_the_middleware_still_answers_first(client: Client) -> None:
    """A scoped route is behind the middleware: no key and a bad key get its own answers."""
    r = client.get("/read")
    assert (r.status, r.code) == (401, "MISSING_API_KEY")
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'
    r = client.get("/read", "sk_live_not_a_key")
    assert (r.status, r.code) == (401, "INVALID_API_KEY")


def test_a_scoped_route_under_an_exempt_path_is_401_not_500(
    client: Client, issue: Callable[..., str]
) -> None:
    """Nothing authenticates an exempt path, so a scope there can never be met: 401, and the
    same 401 when a key is sent, since the middleware does not read it there."""
    for key in (None, issue("read")):
        r = client.get("/health", key)
        assert (r.status, r.code) == (401, "MISSING_API_KEY")
        assert r.headers["www-authenticate"] == 'Bearer realm="api"'


def test_a_custom_error_body_and_realm_shape_the_refusal(
    framework: str, store: MemoryStore
) -> None:
    def body(denial: Denial) -> Mapping[str, Any]:
        return {"error": denial.code, "needs": denial.details.get("required")}

    ks = Keysentry(store, secret=SECRET, exempt=EXEMPT, error_body=body, realm="items")
    client = Client(framework, ks)
    r = client.get("/both", ks.issue(scopes=["read"]).key.reveal())
    assert r.status == 403
    assert r.body == {"error": "INSUFFICIENT_SCOPE", "needs": ["read", "write"]}
    assert r.headers["www-authenticate"] == (
        'Bearer realm="items", error="insufficient_scope", scope="read write"'
    )
    r = client.get("/health")
    assert r.body == {"error": "MISSING_API_KEY", "needs": None}


def test_a_route_renders_its_refusal_once_not_per_request(
    framework: str, store: MemoryStore
) -> None:
    rendered: list[str] = []

    def body(denial: Denial) -> Mapping[str, Any]:
        rendered.append(denial.code)
        return {"code": denial.code}

    ks = Keysentry(store, secret=SECRET, exempt=EXEMPT, error_body=body)
    client = Client(framework, ks)
    key = ks.issue(scopes=["read"]).key.reveal()
    before = rendered.count("INSUFFICIENT_SCOPE")
    for _ in range(5):
        assert client.get("/both", key).status == 403
    # Starlette and FastAPI render when the route is declared, Flask on its first refusal.
    assert rendered.count("INSUFFICIENT_SCOPE") - before == (framework == "flask")


@pytest.mark.parametrize("framework", ["starlette", "flask"])  # FastAPI has none
def test_class_based_views_take_scopes_per_method(
    framework: str, ks: Keysentry, issue: Callable[..., str]
) -> None:
    client = Client(framework, ks)
    reader = issue("read")
    r = client.get("/items", reader)
    assert (r.status, r.body) == (200, "listed")
    _insufficient(client.request("POST", "/items", reader), ["write"])
    assert client.request("POST", "/items", issue("write")).status == 201


@pytest.mark.parametrize("scope", ["", "read write", 'a"b', "back\\slash", "caf\u00e9", "tab\t"])
def test_scope_names_that_would_break_the_challenge_are_refused_at_declaration(
    ks: Keysentry, scope: str
) -> None:
    with pytest.raises(ValueError, match="invalid scope"):
        Scopes(ks).require(scope)
    with pytest.raises(ValueError, match="invalid scope"):
        FastAPIKeys(ks).require("read", scope)
    with pytest.raises(ValueError, match="invalid scope"):
        requires_scopes(scope)


def test_repeated_scopes_are_declared_once(ks: Keysentry) -> None:
    app = FastAPI()
    auth = FastAPIKeys(ks)
    auth.init_app(app)

    @app.get("/x", dependencies=[Security(auth.require("read", "write", "read"))])
    async def x() -> None: ...

    key = ks.issue(scopes=["read"]).key.reveal()
    r = TestClient(app).get("/x", headers={"X-API-Key": key})
    assert r.json()["error"]["details"] == {"required": ["read", "write"]}
    assert r.headers["www-authenticate"].endswith('scope="read write"')


def test_importing_keysentry_imports_no_framework() -> None:
    """The helpers are separate modules: ``import keysentry`` stays standard-library only."""
    code = (
        "import keysentry, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'fastapi', 'flask', 'werkzeug', 'pydantic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- Starlette ------------------------------------------------------------------------------------


def test_starlette_route_without_the_middleware_is_401(ks: Keysentry) -> None:
    @Scopes(ks).require("read")
    async def read(request: Request) -> JSONResponse:
        return JSONResponse({})

    r = TestClient(Starlette(routes=[Route("/read", read)])).get("/read")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "MISSING_API_KEY"


def test_starlette_decorator_keeps_the_endpoint_name_and_kind(ks: Keysentry) -> None:
    scopes = Scopes(ks)

    async def list_items(request: Request) -> JSONResponse:
        return JSONResponse({})

    def list_sync(request: Request) -> JSONResponse:
        return JSONResponse({})

    guarded, guarded_sync = scopes.require("read")(list_items), scopes.require("read")(list_sync)
    assert guarded.__name__ == "list_items"
    assert asyncio.iscoroutinefunction(guarded)
    # A sync endpoint stays sync, so Starlette still runs it in its threadpool.
    assert not asyncio.iscoroutinefunction(guarded_sync)


def test_starlette_websocket_with_the_scope_is_accepted(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    client = TestClient(starlette_app(ks))
    with client.websocket_connect("/ws", headers={"X-API-Key": issue("write")}) as ws:
        assert ws.receive_json()["scopes"] == ["write"]


def test_starlette_websocket_without_the_scope_gets_the_403_as_http(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    client = TestClient(starlette_app(ks))
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws", headers={"X-API-Key": issue("read")}),
    ):
        pytest.fail("the websocket was accepted")
    response = denied.value
    _insufficient(Result(response.status_code, response.headers, response.json()), ["write"])


def test_starlette_websocket_without_the_extension_is_closed_with_1008(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    key = issue("read").encode()
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"x-api-key", key)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    sent = asgi_call(starlette_app(ks), scope, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "INSUFFICIENT_SCOPE"}]


# -- FastAPI ---------------------------------------------------------------------------------------


def test_fastapi_router_dependencies_guard_every_route(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    client = TestClient(fastapi_app(ks))
    r = client.get("/admin/stats", headers={"X-API-Key": issue("read")})
    assert r.status_code == 403
    assert r.json()["error"]["details"] == {"required": ["admin"]}
    assert client.get("/admin/stats", headers={"X-API-Key": issue("admin")}).json() == {"keys": 1}


def test_fastapi_websocket_without_the_scope_gets_the_403_as_http(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    client = TestClient(fastapi_app(ks))
    with client.websocket_connect("/ws", headers={"X-API-Key": issue("write")}) as ws:
        assert ws.receive_json()["scopes"] == ["write"]
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws", headers={"X-API-Key": issue("read")}),
    ):
        pytest.fail("the websocket was accepted")
    assert denied.value.status_code == 403
    assert denied.value.json()["error"]["code"] == "INSUFFICIENT_SCOPE"


def test_fastapi_openapi_declares_both_ways_to_send_a_key(ks: Keysentry) -> None:
    schema = fastapi_app(ks).openapi()
    assert schema["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The API key, as `Authorization: Bearer <key>`." + ADMIN,
        },
        "APIKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "The API key, as `X-API-Key: <key>`." + ADMIN,
        },
    }
    paths = schema["paths"]
    # Either scheme will do (a list of alternatives), each naming the route's scopes.
    assert paths["/read"]["get"]["security"] == [
        {"HTTPBearer": ["read"]},
        {"APIKeyHeader": ["read"]},
    ]
    assert paths["/both"]["get"]["security"] == [
        {"HTTPBearer": ["read", "write"]},
        {"APIKeyHeader": ["read", "write"]},
    ]
    assert paths["/any"]["get"]["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    assert paths["/admin/stats"]["get"]["security"][0] == {"HTTPBearer": ["admin"]}
    assert "security" not in paths["/open"]["get"]
    # The schemes document; they are not request parameters.
    assert "parameters" not in paths["/read"]["get"]


def test_fastapi_openapi_follows_the_guards_header_settings(store: MemoryStore) -> None:
    # No scope implications: the descriptions say nothing of them.
    ks = Keysentry(store, api_key_header="X-Key", query_param="api_key", scope_implications={})
    schemes = fastapi_app(ks).openapi()["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "X-Key"
    assert schemes["APIKeyQuery"] == {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "The API key, as `?api_key=<key>`.",
    }
    ks = Keysentry(store, api_key_header=None)
    assert list(fastapi_app(ks).openapi()["components"]["securitySchemes"]) == ["HTTPBearer"]
    ks = Keysentry(store, header="X-Authorization", api_key_header=None)
    schemes = fastapi_app(ks).openapi()["components"]["securitySchemes"]
    assert schemes == {
        "BearerHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Authorization",
            "description": "The API key, as `X-Authorization: Bearer <key>`." + ADMIN,
        }
    }


def test_fastapi_docs_load_and_the_authorize_button_sends_keys(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    client = TestClient(fastapi_app(ks))
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "/openapi.json" in docs.text
    assert client.get("/openapi.json").status_code == 200
    # What Swagger UI sends for each scheme once authorised.
    key = issue("read")
    assert client.get("/read", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/read", headers={"X-API-Key": key}).status_code == 200


def test_fastapi_without_the_handler_still_refuses_with_status_and_challenge(
    ks: Keysentry, issue: Callable[..., str]
) -> None:
    """Forgetting init_app's handler costs the body's shape, never the refusal itself."""
    auth = FastAPIKeys(ks)
    app = FastAPI()
    app.add_middleware(ASGIMiddleware, keysentry=ks)

    @app.get("/both", dependencies=[Security(auth.require("read", "write"))])
    async def both() -> None: ...

    r = TestClient(app).get("/both", headers={"X-API-Key": issue("read")})
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="read write"'
    )
    assert r.json() == {
        "detail": "The API key lacks a scope this endpoint needs (required: read write)."
    }


def test_fastapi_refused_carries_the_denial_and_its_rendering(ks: Keysentry) -> None:
    auth = FastAPIKeys(ks)
    dependency = auth.require("read")
    conn = Request({"type": "http", "state": {}, "headers": []})
    with pytest.raises(Refused) as refused:
        asyncio.run(dependency(conn=conn))
    assert refused.value.denial.code == "MISSING_API_KEY"
    assert refused.value.rendered.status == refused.value.status_code == 401


# -- Flask -----------------------------------------------------------------------------------------


def test_flask_current_key_outside_an_authenticated_request_says_why(ks: Keysentry) -> None:
    app = flask_app(ks)
    with app.test_request_context("/health"), pytest.raises(RuntimeError, match="exempt"):
        _ = current_key.id


def test_flask_requires_scopes_needs_the_extension(ks: Keysentry) -> None:
    from flask import Flask

    from keysentry import WSGIMiddleware

    app = Flask(__name__)
    app.testing = True  # let the error through the test client
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)  # type: ignore[method-assign]

    @app.get("/read")
    @requires_scopes("read")
    def read() -> str:
        return "ok"

    key = ks.issue(scopes=["write"]).key.reveal()
    with pytest.raises(RuntimeError, match="init_app"):
        app.test_client().get("/read", headers={"X-API-Key": key})


def test_flask_extension_installs_once_and_registers(ks: Keysentry) -> None:
    from flask import Flask

    from keysentry import WSGIMiddleware

    app = Flask(__name__)
    extension = KeysentryFlask(ks)
    extension.init_app(app)
    assert app.extensions["keysentry"] is extension
    assert isinstance(app.wsgi_app, WSGIMiddleware)
    with pytest.raises(RuntimeError, match="already installed"):
        extension.init_app(app)


class AsyncOnlyStore:
    """A store with only the async face, as an ASGI-only backend would be."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("a"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def aget(self, key_id: str) -> Any:
        return self.inner.get(key_id)

    async def afind_by_digest(self, digest: bytes) -> Any:
        return self.inner.find_by_digest(digest)

    async def acreate(self, record: Any) -> None:
        self.inner.create(record)

    async def aupdate(self, key_id: str, changes: Any) -> Any:
        return self.inner.update(key_id, changes)

    async def alist_keys(self, **options: Any) -> Any:
        return self.inner.list_keys(**options)

    async def aspend_credits(self, key_id: str, amount: int = 1) -> Any:
        return self.inner.spend_credits(key_id, amount)

    async def arecord_usage(self, usage: Any) -> None:
        self.inner.record_usage(usage)

    async def aclose(self) -> None:
        pass


def test_a_sync_starlette_endpoint_refunds_through_an_async_only_store() -> None:
    store = AsyncOnlyStore()
    guard = Keysentry(store, secret=SECRET, usage_interval=None)  # type: ignore[arg-type]
    import asyncio

    writer = asyncio.run(guard.aissue(name="w", scopes=["write"], credits=1))
    client = TestClient(starlette_app(guard))
    r = client.get("/sync", headers={"X-API-Key": writer.key.reveal()})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "INSUFFICIENT_SCOPE")
    assert store.inner.get(writer.record.id).credits == 1  # type: ignore[union-attr]
