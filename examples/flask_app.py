"""Flask behind keysentry: the extension, and scopes per route.

From a clone of the repository:

    uv run python examples/flask_app.py --mint    # serves http://127.0.0.1:8000, prints keys
    uv run flask --app examples/flask_app.py run --port 8000    # the same app, Flask's command

Keys live in $KEYSENTRY_STORE (default sqlite:///keysentry.db, the keysentry CLI's default),
digested with $KEYSENTRY_SECRET when it is set: keys the CLI creates on that store, with the
same secret, work here. examples/README.md has the curl lines.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flask import Flask, request

from keysentry import Keysentry
from keysentry.flask import KeysentryFlask, current_key, requires_scopes
from keysentry.stores import from_url

ks = Keysentry(
    from_url(os.environ.get("KEYSENTRY_STORE", "sqlite:///keysentry.db")),
    secret=os.environ.get("KEYSENTRY_SECRET") or None,
    exempt=["/health"],
)

app = Flask(__name__)
KeysentryFlask(ks, app)  # wraps app.wsgi_app with keysentry's WSGI middleware

ITEMS: list[dict[str, Any]] = [{"id": 1, "name": "lighthouse"}]


@app.get("/health")
def health() -> dict[str, Any]:
    return {"ok": True}


@app.get("/v1/items")
@requires_scopes("read")
def list_items() -> dict[str, Any]:
    return {"items": ITEMS, "key": current_key.prefix}


@app.post("/v1/items")
@requires_scopes("write")
def create_item() -> tuple[dict[str, Any], int]:
    body = request.get_json(force=True)
    created = {"id": len(ITEMS) + 1, "name": body["name"], "created_by": current_key.id}
    ITEMS.append(created)
    return created, 201


@app.get("/v1/me")
@requires_scopes()  # any valid key
def me() -> dict[str, Any]:
    key = current_key
    return {"id": key.id, "name": key.name, "owner": key.owner, "scopes": sorted(key.scopes)}


def mint(base: str) -> None:
    reader = ks.issue(name="example-reader", scopes=["read"]).key.reveal()
    writer = ks.issue(name="example-writer", scopes=["read", "write"]).key.reveal()
    print(f"""Two keys, shown once (the store keeps only their digests):

    scopes read:        {reader}
    scopes read write:  {writer}

    # 200
    curl -H "Authorization: Bearer {reader}" {base}/v1/items
    # 403 INSUFFICIENT_SCOPE: creating items needs "write"
    curl -i -X POST -H "X-API-Key: {reader}" -d '{{"name": "kite"}}' {base}/v1/items
    # 201
    curl -X POST -H "X-API-Key: {writer}" -d '{{"name": "kite"}}' {base}/v1/items
    # 401 MISSING_API_KEY
    curl -i {base}/v1/items
""")


def main() -> None:
    parser = argparse.ArgumentParser(description="Flask behind keysentry")
    parser.add_argument("--mint", action="store_true", help="create two keys and print them")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.mint:
        mint(f"http://127.0.0.1:{args.port}")
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
