"""Every Python block of README.md and examples/README.md runs as pasted.

Each block is written to a file of its own in an empty directory and run by a fresh
interpreter, with no ``$KEYSENTRY_SECRET`` or ``$KEYSENTRY_STORE`` in its environment: what it
needs (imports, the secret, a store, a key) must be in the block. A block that defines an
``app`` is then served as its reader would try it: the key it printed, on the route it
declares, gets 200, and no key 401. A block that defines test classes (the conformance kit's)
is run by pytest. Blocks that name Redis or PostgreSQL run against the machine's servers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .services import redis_or_skip

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", ROOT / "examples" / "README.md"]


@dataclass(frozen=True)
class Block:
    where: str  # "README.md:63", the line of its opening fence
    code: str


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


BLOCKS = [block for path in DOCS for block in blocks(path)]

#: Serves the ``app`` a block left, as a reader would try it: with the key it printed, and
#: without one. Prints one JSON line: the statuses, or why it could not try.
TRY_APP = r"""
import contextlib, io, json, re, runpy, sys

method, path = sys.argv[1], sys.argv[2]
sys.argv = ["app.py"]
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    app = runpy.run_path("app.py", run_name="__main__").get("app")
keys = re.findall(r"\bsk_live_[A-Za-z0-9]+", printed.getvalue())
if app is None or not keys:
    print(json.dumps({"app": app is not None, "keys": len(keys)}))
    raise SystemExit(0)
if hasattr(app, "test_client"):  # Flask
    client = app.test_client()
    ask = lambda headers: client.open(path, method=method, headers=headers).status_code
    statuses = [ask({"Authorization": f"Bearer {keys[0]}"}), ask({})]
else:
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        ask = lambda headers: client.request(method, path, headers=headers).status_code
        statuses = [ask({"Authorization": f"Bearer {keys[0]}"}), ask({})]
print(json.dumps({"app": True, "keys": len(keys), "statuses": statuses}))
"""


def _route(code: str) -> tuple[str, str]:
    """The first route a block declares: ``@app.get("/x")`` or ``Route("/x", ...)``."""
    decorated = re.search(r"@app\.(get|post|put|patch|delete)\(\"([^\"]+)\"", code)
    if decorated:
        return decorated.group(1).upper(), decorated.group(2)
    routed = re.search(r"Route\(\"([^\"]+)\"", code)
    assert routed, "the block defines an app but declares no route to try"
    return "GET", routed.group(1)


def _environment() -> dict[str, str]:
    hidden = ("KEYSENTRY_SECRET", "KEYSENTRY_STORE", "KEYSENTRY_INVALIDATOR")
    return {k: v for k, v in os.environ.items() if k not in hidden}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=120
    )


def test_the_docs_hold_the_blocks_this_test_runs() -> None:
    """The extraction finds what a reader sees: every fence opened as Python is a block."""
    for path in DOCS:
        fences = path.read_text(encoding="utf-8").count("```python\n")
        assert len(blocks(path)) == fences, path
    assert len(BLOCKS) >= 12


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_a_python_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    if "redis://" in block.code:
        redis_or_skip()
    source = tmp_path / "app.py"
    source.write_text(block.code, encoding="utf-8")
    ran = _run([sys.executable, "app.py"], tmp_path)
    assert ran.returncode == 0, f"{block.where}\n{ran.stdout}\n{ran.stderr}"
    assert "Traceback" not in ran.stderr, ran.stderr

    if re.search(r"^class Test\w*", block.code, flags=re.M):
        tests = tmp_path / "test_block.py"
        source.rename(tests)
        ran = _run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests.name], tmp_path
        )
        assert ran.returncode == 0, f"{block.where}\n{ran.stdout}\n{ran.stderr}"
        assert re.search(r"^\d+ passed", ran.stdout.splitlines()[-1]), ran.stdout

    if re.search(r"^app = ", block.code, flags=re.M):
        method, path = _route(block.code)
        (tmp_path / "try_app.py").write_text(TRY_APP, encoding="utf-8")
        tried = _run([sys.executable, "try_app.py", method, path], tmp_path)
        assert tried.returncode == 0, f"{block.where}\n{tried.stdout}\n{tried.stderr}"
        result = json.loads(tried.stdout.splitlines()[-1])
        assert result["keys"] >= 1, f"{block.where} defines an app but prints no key to try"
        assert result["statuses"] == [200, 401], (block.where, method, path, result)
