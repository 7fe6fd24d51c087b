"""OpenAPI of FastAPI routes protected by ``FastAPIKeys``: the refusals the guard can answer
there, their body's schema (``components.schemas.KeysentryError``), an example per code and
their headers; read from ``/openapi.json`` as a client generator reads it, and held against
real refusals.

No ``from __future__ import annotations`` here: FastAPI reads the dependencies from the
annotations of routes declared in a function.
"""

import json
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Security
from fastapi.openapi.utils import get_openapi
from starlette.testclient import TestClient

from keysentry import KeyIdentity, Keysentry, MemoryStore
from keysentry.errors import ERRORS, Denial
from keysentry.fastapi import FastAPIKeys
from keysentry.ratelimit import MemoryLimiter
from keysentry.stores.sql import SQLStore

from .conftest import SECRET

EXEMPT = ["/health", "/docs/*", "/openapi.json"]


def api(ks: Keysentry, auth: FastAPIKeys | None = None) -> FastAPI:
    """The README's FastAPI app, and a few more routes."""
    auth = auth or FastAPIKeys(ks)
    app = FastAPI()
    auth.init_app(app)

    @app.post("/v1/items", status_code=201)
    async def create(key: Annotated[KeyIdentity, Security(auth.require("write"))]) -> Any:
        return {"created_by": key.id}

    @app.get("/v1/me")
    async def me(key: Annotated[KeyIdentity, Security(auth.require())]) -> Any:
        return {"id": key.id}

    @app.get(
        "/v1/declared",
        dependencies=[Security(auth.require("read"))],
        responses={401: {"description": "Our own words for a 401."}},
    )
    async def declared() -> Any:
        return {}

    @app.get("/health")
    async def health() -> Any:
        return {"ok": True}

    admin = APIRouter(prefix="/admin", dependencies=[Security(auth.require("admin"))])

    @admin.get("/stats")
    async def stats(key: Annotated[KeyIdentity, Security(auth.require("read"))]) -> Any:
        return {"keys": 1}

    app.include_router(admin)
    return app


@pytest.fixture
def limited() -> Keysentry:
    return Keysentry(
        MemoryStore(), secret=SECRET, exempt=EXEMPT, limiter=MemoryLimiter(), rate_limit="2/minute"
    )


def _document(app: FastAPI) -> dict[str, Any]:
    served = TestClient(app).get("/openapi.json")
    assert served.status_code == 200
    return served.json()


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def _validate(doc: dict[str, Any], schema: Any, value: Any, where: str = "$") -> None:
    """The JSON Schema keywords keysentry's error schema uses (no validator in the lock file)."""
    schema = _resolve(doc, schema)
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if kind is not None:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
        if kind == "integer":
            assert not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value!r} < {schema['minimum']}"
    if kind == "object":
        for name in schema.get("required", ()):
            assert name in value, f"{where}: {name!r} is required"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                _validate(doc, properties[name], item, f"{where}.{name}")
            else:
                assert schema.get("additionalProperties", True) is not False, f"{where}.{name}"
    if kind == "array":
        for i, item in enumerate(value):
            _validate(doc, schema.get("items", {}), item, f"{where}[{i}]")


def _check_structure(doc: dict[str, Any]) -> None:
    """What an OpenAPI 3.1 validator would hold the parts keysentry writes to: every response
    has a description, every ``$ref`` resolves, every example matches its schema, every
    header has a schema."""
    assert doc["openapi"].startswith("3.")
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                where = f"{method.upper()} {path} {status}"
                assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), where
                assert isinstance(response.get("description"), str), where
                for name, header in response.get("headers", {}).items():
                    assert "schema" in _resolve(doc, header), (where, name)
                for media in response.get("content", {}).values():
                    for example in media.get("examples", {}).values():
                        _validate(doc, media["schema"], example["value"], where)
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc)):
        _resolve(doc, {"$ref": ref})


def test_protected_operations_declare_the_guards_refusals(limited: Keysentry) -> None:
    doc = _document(api(limited))
    _check_structure(doc)
    paths = doc["paths"]
    create = paths["/v1/items"]["post"]["responses"]
    # A memory store and an in-process limiter never answer 503.
    assert list(create) == ["201", "400", "401", "402", "403", "429"]
    assert set(paths["/v1/me"]["get"]["responses"]) == set(create) - {"201"} | {"200"}
    assert list(paths["/health"]["get"]["responses"]) == ["200"]  # not protected

    examples = create["401"]["content"]["application/json"]["examples"]
    assert list(examples) == ["MISSING_API_KEY", "INVALID_API_KEY", "EXPIRED_API_KEY"]
    assert examples["MISSING_API_KEY"]["value"]["error"]["code"] == "MISSING_API_KEY"
    assert examples["EXPIRED_API_KEY"]["value"]["error"]["details"]["expired_at"]
    assert create["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert create["400"]["headers"]["WWW-Authenticate"]["example"] == (
        'Bearer realm="api", error="invalid_request"'
    )

    # Scopes: the 403 names them, with the challenge that carries them.
    forbidden = create["403"]
    examples = forbidden["content"]["application/json"]["examples"]
    assert list(examples) == ["API_KEY_DISABLED", "IP_NOT_ALLOWED", "INSUFFICIENT_SCOPE"]
    assert examples["INSUFFICIENT_SCOPE"]["value"]["error"]["details"] == {"required": ["write"]}
    assert forbidden["headers"]["WWW-Authenticate"]["example"] == (
        'Bearer realm="api", error="insufficient_scope", scope="write"'
    )
    anyone = paths["/v1/me"]["get"]["responses"]["403"]
    assert "INSUFFICIENT_SCOPE" not in anyone["content"]["application/json"]["examples"]
    assert "headers" not in anyone
    # A router's scopes and the route's own: all of them are required.
    stats = paths["/admin/stats"]["get"]["responses"]["403"]
    scope = stats["content"]["application/json"]["examples"]["INSUFFICIENT_SCOPE"]
    assert scope["value"]["error"]["details"]["required"] == ["admin", "read"]

    # Rate limits: the 429s, their headers, and the RateLimit fields of successful answers.
    too_many = create["429"]
    assert list(too_many["content"]["application/json"]["examples"]) == [
        "RATE_LIMITED",
        "TOO_MANY_FAILED_ATTEMPTS",
    ]
    assert too_many["headers"]["Retry-After"]["required"] is True
    assert too_many["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 0}
    assert set(too_many["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}
    assert set(create["201"]["headers"]) == {"RateLimit", "RateLimit-Policy"}
    assert set(create["402"]["headers"]) == {"RateLimit", "RateLimit-Policy"}

    # One schema for every error body, as a component.
    schema = doc["components"]["schemas"]["KeysentryError"]
    assert schema["required"] == ["success", "error"]
    error = schema["properties"]["error"]
    assert error["required"] == ["code", "message", "details"]
    assert error["properties"]["code"]["enum"] == list(ERRORS)
    for status in ("400", "401", "402", "403", "429"):
        media = create[status]["content"]["application/json"]
        assert media["schema"] == {"$ref": "#/components/schemas/KeysentryError"}


def test_responses_the_route_declares_are_kept(limited: Keysentry) -> None:
    responses = _document(api(limited))["paths"]["/v1/declared"]["get"]["responses"]
    assert responses["401"] == {"description": "Our own words for a 401."}
    assert "INSUFFICIENT_SCOPE" in json.dumps(responses["403"])


def test_real_refusals_match_what_the_document_declares(limited: Keysentry) -> None:
    app = api(limited)
    client = TestClient(app)
    doc = _document(app)
    declared = doc["paths"]["/v1/items"]["post"]["responses"]
    schema = doc["components"]["schemas"]["KeysentryError"]
    key = limited.issue(name="writer", scopes=["write"]).key.reveal()
    reader = limited.issue(name="reader", scopes=["read"]).key.reveal()
    refusals = [
        client.post("/v1/items"),
        client.post("/v1/items", headers={"Authorization": key}),
        client.post("/v1/items", headers={"X-API-Key": reader}),
        client.post("/v1/items", headers={"X-API-Key": key, "Authorization": f"Bearer {reader}"}),
    ]
    assert [r.status_code for r in client_posts(client, key, 3)] == [201, 201, 429]
    refusals.append(client.post("/v1/items", headers={"X-API-Key": key}))
    assert [r.status_code for r in refusals] == [401, 401, 403, 400, 429]
    for response in refusals:
        status = str(response.status_code)
        body = response.json()
        _validate(doc, schema, body)
        examples = declared[status]["content"]["application/json"]["examples"]
        assert body["error"]["code"] in examples
        # Every header the guard sent beyond the body's own is declared on that response.
        sent = {name.lower() for name in response.headers} - {
            "content-type",
            "content-length",
            "cache-control",
        }
        assert sent <= {name.lower() for name in declared[status].get("headers", {})}, status
        required = {
            n.lower() for n, h in declared[status].get("headers", {}).items() if h.get("required")
        }
        assert required <= sent, status
    allowed = client_posts(client, limited.issue(name="w2", scopes=["write"]).key.reveal(), 1)
    assert {"ratelimit", "ratelimit-policy"} <= {n.lower() for n in allowed[0].headers}
    assert {n.lower() for n in declared["201"]["headers"]} == {"ratelimit", "ratelimit-policy"}


def client_posts(client: TestClient, key: str, n: int) -> list[Any]:
    return [client.post("/v1/items", headers={"X-API-Key": key}) for _ in range(n)]


def test_only_the_refusals_the_guard_can_answer_are_declared(tmp_path: Path) -> None:
    # No limiter, no failed-attempt throttling: no 429, and no RateLimit fields.
    bare = Keysentry(MemoryStore(), secret=SECRET, exempt=EXEMPT, failure_limit=None)
    create = _document(api(bare))["paths"]["/v1/items"]["post"]["responses"]
    assert list(create) == ["201", "400", "401", "402", "403"]
    assert "headers" not in create["201"]
    # Throttling alone: a 429 without RateLimit fields.
    throttled = Keysentry(MemoryStore(), secret=SECRET, exempt=EXEMPT)
    too_many = _document(api(throttled))["paths"]["/v1/items"]["post"]["responses"]["429"]
    assert set(too_many["headers"]) == {"Retry-After"}
    assert list(too_many["content"]["application/json"]["examples"]) == ["TOO_MANY_FAILED_ATTEMPTS"]
    # A store that can be unreachable: 503 with Retry-After.
    store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        remote = Keysentry(store, secret=SECRET, exempt=EXEMPT, retry_after=7)
        unavailable = _document(api(remote))["paths"]["/v1/items"]["post"]["responses"]["503"]
    finally:
        store.close()
    example = unavailable["content"]["application/json"]["examples"]["AUTH_UNAVAILABLE"]
    assert example["value"]["error"]["code"] == "AUTH_UNAVAILABLE"
    assert unavailable["headers"]["Retry-After"]["required"] is True


def test_a_custom_error_body_gets_its_own_examples_and_schema() -> None:
    def body(denial: Denial) -> dict[str, Any]:
        return {"type": f"https://errors.example/{denial.code}", "title": denial.message}

    ks = Keysentry(MemoryStore(), secret=SECRET, exempt=EXEMPT, error_body=body)
    doc = _document(api(ks))
    examples = doc["paths"]["/v1/me"]["get"]["responses"]["401"]["content"]["application/json"]
    assert examples["examples"]["MISSING_API_KEY"]["value"]["type"] == (
        "https://errors.example/MISSING_API_KEY"
    )
    assert doc["components"]["schemas"]["KeysentryError"]["type"] == "object"
    assert "properties" not in doc["components"]["schemas"]["KeysentryError"]
    _check_structure(doc)

    problem = {
        "type": "object",
        "required": ["type", "title"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}},
    }
    doc = _document(api(ks, FastAPIKeys(ks, error_schema=problem)))
    assert doc["components"]["schemas"]["KeysentryError"] == problem
    _check_structure(doc)
    real = TestClient(api(ks)).get("/v1/me")
    _validate(doc, problem, real.json())


def test_an_app_that_builds_its_own_document_asks_for_the_responses(limited: Keysentry) -> None:
    auth = FastAPIKeys(limited)
    app = api(limited, auth)
    doc = get_openapi(title="custom", version="1", routes=app.routes)
    assert "401" not in doc["paths"]["/v1/me"]["get"]["responses"]
    assert auth.document(doc) is doc
    assert "401" in doc["paths"]["/v1/me"]["get"]["responses"]
    assert "KeysentryError" in doc["components"]["schemas"]
    assert auth.document(doc) == doc  # twice changes nothing


def test_a_scheme_of_the_same_name_but_not_ours_is_not_taken_for_ours(
    limited: Keysentry,
) -> None:
    from fastapi.security import HTTPBearer

    app = FastAPI()
    FastAPIKeys(limited).init_app(app)
    theirs = HTTPBearer(description="Another team's tokens.")

    @app.get("/theirs")
    async def other(token: Annotated[Any, Security(theirs)]) -> Any:
        return {}

    doc = _document(app)
    assert list(doc["paths"]["/theirs"]["get"]["responses"]) == ["200"]
