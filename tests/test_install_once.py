"""keysentry judges a request once: an integration set up on an app that keysentry already
guards refuses at setup, saying what is installed and what to keep.

Twice installed, a request was judged twice: a limit of 4 a minute admitted 2, and each
request took 2 of a key's credits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.middleware.proxy_fix import ProxyFix

from keysentry import ASGIMiddleware, Keysentry, MemoryLimiter, MemoryStore, WSGIMiddleware
from keysentry.fastapi import FastAPIKeys
from keysentry.flask import KeysentryFlask, current_key, requires_scopes

from .conftest import SECRET


@pytest.fixture
def ks() -> Keysentry:
    return Keysentry(MemoryStore(), secret=SECRET, limiter=MemoryLimiter(), usage_interval=None)


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/v1/me")
    @requires_scopes()
    def me() -> dict[str, Any]:
        return {"id": current_key.id}

    return app


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.state.api_key.id})


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/v1/me", me)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"id": request.state.api_key.id}

    return app


def judged_once(ks: Keysentry, get: Callable[[str], int]) -> None:
    """Four requests under a limit of 4 a minute all pass, the fifth is refused; each spends
    one credit."""
    issued = ks.issue(name="once", rate_limit="4/minute", credits=10)
    key = issued.key.reveal()
    assert [get(key) for _ in range(5)] == [200] * 4 + [429]
    assert ks.credits_of(ks.get(issued.record.id)) == 6


def flask_get(app: Flask) -> Callable[[str], int]:
    client = app.test_client()
    return lambda key: client.get("/v1/me", headers={"X-API-Key": key}).status_code


def asgi_get(app: Any) -> Callable[[str], int]:
    client = TestClient(app)
    return lambda key: client.get("/v1/me", headers={"X-API-Key": key}).status_code


# -- Flask and WSGI ------------------------------------------------------------------------------


def test_the_flask_extension_refuses_an_app_the_middleware_already_wraps(ks: Keysentry) -> None:
    """The README's two Flask sections pasted in order: the second install is refused."""
    app = flask_app()
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)  # type: ignore[method-assign]
    with pytest.raises(RuntimeError) as error:
        KeysentryFlask(ks, app)
    message = str(error.value)
    assert "WSGIMiddleware is already installed on the Flask app" in message
    assert "(app.wsgi_app)" in message
    assert "Remove the line app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)" in message
    assert "keysentry" not in app.extensions
    app.wsgi_app = app.wsgi_app.app  # type: ignore[attr-defined, method-assign]
    KeysentryFlask(ks, app)  # as the message says: the extension alone
    judged_once(ks, flask_get(app))


def test_the_flask_extension_finds_the_middleware_under_other_wrappers(ks: Keysentry) -> None:
    app = flask_app()
    app.wsgi_app = ProxyFix(WSGIMiddleware(app.wsgi_app, ks))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match=r"\(app\.wsgi_app\.app\)"):
        KeysentryFlask(ks).init_app(app)


def test_the_middleware_refuses_an_app_the_flask_extension_guards(ks: Keysentry) -> None:
    app = flask_app()
    KeysentryFlask(ks, app)
    with pytest.raises(RuntimeError) as error:
        WSGIMiddleware(app.wsgi_app, ks)
    assert "WSGIMiddleware is already installed under this app (app)" in str(error.value)
    assert "KeysentryFlask(ks, app), not both" in str(error.value)
    with pytest.raises(RuntimeError, match=r"\(app\.wsgi_app\)"):
        WSGIMiddleware(app, ks)  # the Flask app itself, wrapped whole
    judged_once(ks, flask_get(app))


def test_the_flask_extension_installs_once_per_app(ks: Keysentry) -> None:
    app = flask_app()
    extension = KeysentryFlask(ks, app)
    for again in (extension, KeysentryFlask(Keysentry(MemoryStore()))):
        with pytest.raises(RuntimeError, match="already installed on the Flask app") as error:
            again.init_app(app)
        assert "call init_app once per app" in str(error.value)
    judged_once(ks, flask_get(app))


def test_a_plain_wsgi_app_is_wrapped_once(ks: Keysentry) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    guarded = WSGIMiddleware(app, ks)
    with pytest.raises(RuntimeError, match=r"already installed under this app \(app\)"):
        WSGIMiddleware(guarded, Keysentry(MemoryStore()))  # another guard: twice all the same


# -- Starlette and ASGI --------------------------------------------------------------------------


def test_starlette_with_the_middleware_added_twice_fails_before_serving(ks: Keysentry) -> None:
    app = starlette_app()
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    # Starlette builds its middleware when it starts: the lifespan's startup fails.
    with pytest.raises(RuntimeError) as error, TestClient(app):
        pass
    assert "ASGIMiddleware is already installed under this app (app)" in str(error.value)
    assert "only one of them" in str(error.value)


def test_the_middleware_refuses_to_wrap_a_guarded_starlette_app(ks: Keysentry) -> None:
    app = starlette_app()
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    with pytest.raises(RuntimeError, match=r"already installed under this app \(app\.user_"):
        ASGIMiddleware(app, ks)
    judged_once(ks, asgi_get(app))


def test_the_middleware_finds_a_guard_under_other_middleware(ks: Keysentry) -> None:
    guarded = CORSMiddleware(ASGIMiddleware(starlette_app(), ks), allow_origins=["*"])
    with pytest.raises(RuntimeError, match=r"already installed under this app \(app\.app\)"):
        ASGIMiddleware(guarded, ks)


def test_a_started_app_is_searched_through_its_built_stack(ks: Keysentry) -> None:
    app = starlette_app()
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    judged_once(ks, asgi_get(app))  # built now
    app.user_middleware.clear()  # only the built stack still holds it
    with pytest.raises(RuntimeError, match=r"\(app\.middleware_stack\.app\)"):
        ASGIMiddleware(app, ks)


# -- FastAPI -------------------------------------------------------------------------------------


def test_fastapi_init_app_refuses_an_app_with_the_middleware(ks: Keysentry) -> None:
    app = fastapi_app()
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    for guard in (ks, Keysentry(MemoryStore())):
        with pytest.raises(RuntimeError) as error:
            FastAPIKeys(guard).init_app(app)
        message = str(error.value)
        assert "ASGIMiddleware is already installed on this app (app.user_middleware)" in message
        assert "Remove app.add_middleware(ASGIMiddleware, ...) and call init_app once" in message
    assert len(app.user_middleware) == 1
    judged_once(ks, asgi_get(app))


def test_fastapi_init_app_runs_once_per_app(ks: Keysentry) -> None:
    app = fastapi_app()
    auth = FastAPIKeys(ks)
    auth.init_app(app)
    with pytest.raises(RuntimeError, match="call init_app once"):
        auth.init_app(app)
    with pytest.raises(RuntimeError, match="already installed under this app"):
        ASGIMiddleware(app, ks)
    judged_once(ks, asgi_get(app))
