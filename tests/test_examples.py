"""The runnable examples in ``examples/`` do what examples/README.md says.

Each is imported as ``uvicorn``/``flask`` would import it, with ``$KEYSENTRY_STORE`` pointing at
a memory store (or a SQLite file shared with another guard, as the CLI would share it), and
driven through its framework's test client.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

from keysentry import Keysentry
from keysentry.stores import from_url
from keysentry.testing import KeyStoreContract

from .conftest import SECRET

EXAMPLES = Path(__file__).parent.parent / "examples"
NAMES = ["fastapi_app", "starlette_app", "flask_app"]


def load(name: str, monkeypatch: pytest.MonkeyPatch, store_url: str = "memory://") -> ModuleType:
    monkeypatch.setenv("KEYSENTRY_STORE", store_url)
    monkeypatch.setenv("KEYSENTRY_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location(f"examples.{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


class Client:
    def __init__(self, module: ModuleType) -> None:
        app = module.app
        self._client: Any = app.test_client() if hasattr(app, "test_client") else TestClient(app)
        self._flask = hasattr(app, "test_client")

    def request(
        self, method: str, path: str, key: str | None = None, json: Any = None
    ) -> tuple[int, Any]:
        headers = {} if key is None else {"X-API-Key": key}
        if self._flask:
            r = self._client.open(path, method=method, headers=headers, json=json)
            return r.status_code, r.get_json()
        r = self._client.request(method, path, headers=headers, json=json)
        return r.status_code, r.json()


@pytest.fixture(params=NAMES)
def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load(request.param, monkeypatch)


def test_scopes_decide_who_reads_and_who_writes(example: ModuleType) -> None:
    ks: Keysentry = example.ks
    reader = ks.issue(name="r", scopes=["read"]).key.reveal()
    writer = ks.issue(name="w", scopes=["read", "write"]).key.reveal()
    client = Client(example)

    status, body = client.request("GET", "/v1/items", reader)
    assert status == 200
    assert body["items"][0]["name"] == "lighthouse"

    status, body = client.request("POST", "/v1/items", reader, json={"name": "kite"})
    assert status == 403
    assert body["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert body["error"]["details"] == {"required": ["write"]}

    status, body = client.request("POST", "/v1/items", writer, json={"name": "kite"})
    assert (status, body["name"]) == (201, "kite")

    status, body = client.request("GET", "/v1/items")
    assert (status, body["error"]["code"]) == (401, "MISSING_API_KEY")

    assert client.request("GET", "/health") == (200, {"ok": True})
    status, body = client.request("GET", "/v1/me", writer)
    assert (status, body["scopes"]) == (200, ["read", "write"])


def test_minted_keys_are_printed_and_work(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    example.mint("http://127.0.0.1:8000")
    out = capsys.readouterr().out
    reader, writer = re.findall(r"scopes read(?: write)?:\s+(\S+)", out)
    client = Client(example)
    assert client.request("GET", "/v1/items", reader)[0] == 200
    assert client.request("POST", "/v1/items", reader, json={"name": "x"})[0] == 403
    assert client.request("POST", "/v1/items", writer, json={"name": "x"})[0] == 201
    assert f'curl -H "Authorization: Bearer {reader}" http://127.0.0.1:8000/v1/items' in out
    assert not [marker for marker in INTERNAL if marker in out], out


#: What a reader should never have to decode: reprs of keysentry's internals.
INTERNAL = ("Verdict(", "KeyRecord(", "KeyIdentity(", "mappingproxy", "datetime.datetime(")


def test_the_store_example_prints_what_it_did_and_nothing_internal() -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_store.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert re.fullmatch(
        r"authenticated sk_live_[A-Za-z0-9]{12}\.\.\. \(example\) by a RowStore\n", run.stdout
    ), run.stdout
    assert run.stderr == ""


@pytest.mark.parametrize("name", NAMES)
def test_keys_made_elsewhere_on_the_same_store_work(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the keysentry CLI does: another guard, the same store URL and secret."""
    url = f"sqlite:///{tmp_path / 'keysentry.db'}"
    store = from_url(url)
    try:
        key = Keysentry(store, secret=SECRET).issue(name="cli", scopes=["read"]).key.reveal()
    finally:
        store.close()
    module = load(name, monkeypatch, url)
    try:
        assert Client(module).request("GET", "/v1/items", key)[0] == 200
    finally:
        module.ks.store.close()


def test_fastapi_example_documents_its_security(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("fastapi_app", monkeypatch)
    client = TestClient(module.app)
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    assert schema["paths"]["/v1/items"]["post"]["security"] == [
        {"HTTPBearer": ["write"]},
        {"APIKeyHeader": ["write"]},
    ]


def _custom_store() -> Any:
    spec = importlib.util.spec_from_file_location(
        "examples.custom_store", EXAMPLES / "custom_store.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RowStore


class TestCustomStoreExample(KeyStoreContract):
    """examples/custom_store.py, proven by the kit as a plugin author would prove theirs."""

    @pytest.fixture
    def store(self) -> Any:
        return _custom_store()()
