"""FastAPI behind keysentry: scopes per route, and /docs with a working Authorize button.

From a clone of the repository:

    uv run python examples/fastapi_app.py --mint    # serves http://127.0.0.1:8000, prints keys
    uv run uvicorn examples.fastapi_app:app         # the same app, under uvicorn's own command

Keys live in $KEYSENTRY_STORE (default sqlite:///keysentry.db, the keysentry CLI's default),
digested with $KEYSENTRY_SECRET when it is set: keys the CLI creates on that store, with the
same secret, work here. examples/README.md has the curl lines.
"""

from __future__ import annotations

import argparse
import os
from typing import Annotated, Any

from fastapi import FastAPI, Security
from pydantic import BaseModel

from keysentry import KeyIdentity, Keysentry
from keysentry.fastapi import FastAPIKeys
from keysentry.stores import from_url

ks = Keysentry(
    from_url(os.environ.get("KEYSENTRY_STORE", "sqlite:///keysentry.db")),
    secret=os.environ.get("KEYSENTRY_SECRET") or None,
    exempt=["/health", "/docs/*", "/openapi.json"],  # the docs load without a key
)
auth = FastAPIKeys(ks)

app = FastAPI(title="keysentry example")
auth.init_app(app)  # the middleware, and keysentry's own error responses

# The key that authenticated the request, for keys holding these scopes (all of them).
AnyKey = Annotated[KeyIdentity, Security(auth.require())]
Reader = Annotated[KeyIdentity, Security(auth.require("read"))]
Writer = Annotated[KeyIdentity, Security(auth.require("write"))]

ITEMS: list[dict[str, Any]] = [{"id": 1, "name": "lighthouse"}]


class NewItem(BaseModel):
    name: str


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/v1/items")
async def list_items(key: Reader) -> dict[str, Any]:
    return {"items": ITEMS, "key": key.prefix}


@app.post("/v1/items", status_code=201)
async def create_item(item: NewItem, key: Writer) -> dict[str, Any]:
    created = {"id": len(ITEMS) + 1, "name": item.name, "created_by": key.id}
    ITEMS.append(created)
    return created


@app.get("/v1/me")
async def me(key: AnyKey) -> dict[str, Any]:
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
    curl -i -X POST -H "X-API-Key: {reader}" -H "Content-Type: application/json" \\
        -d '{{"name": "kite"}}' {base}/v1/items
    # 201
    curl -X POST -H "X-API-Key: {writer}" -H "Content-Type: application/json" \\
        -d '{{"name": "kite"}}' {base}/v1/items
    # 401 MISSING_API_KEY
    curl -i {base}/v1/items

The docs, with an Authorize button for either header: {base}/docs
""")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mint", action="store_true", help="create two keys and print them")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.mint:
        mint(f"http://127.0.0.1:{args.port}")
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
