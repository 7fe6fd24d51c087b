"""Starlette behind keysentry: scopes per route, on an HTTPEndpoint and on a function.

From a clone of the repository:

    uv run python examples/starlette_app.py --mint    # serves http://127.0.0.1:8000, prints keys
    uv run uvicorn examples.starlette_app:app         # the same app, under uvicorn's own command

Keys live in $KEYSENTRY_STORE (default sqlite:///keysentry.db, the keysentry CLI's default),
digested with $KEYSENTRY_SECRET when it is set: keys the CLI creates on that store, with the
same secret, work here. examples/README.md has the curl lines.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keysentry import ASGIMiddleware, Keysentry
from keysentry.starlette import Scopes
from keysentry.stores import from_url

ks = Keysentry(
    from_url(os.environ.get("KEYSENTRY_STORE", "sqlite:///keysentry.db")),
    secret=os.environ.get("KEYSENTRY_SECRET") or None,
    exempt=["/health"],
)
scopes = Scopes(ks)  # refusals rendered by this guard, like the middleware's own

ITEMS: list[dict[str, Any]] = [{"id": 1, "name": "lighthouse"}]


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


class Items(HTTPEndpoint):
    @scopes.require("read")
    async def get(self, request: Request) -> JSONResponse:
        return JSONResponse({"items": ITEMS, "key": request.state.api_key.prefix})

    @scopes.require("write")
    async def post(self, request: Request) -> JSONResponse:
        body = await request.json()
        created = {
            "id": len(ITEMS) + 1,
            "name": body["name"],
            "created_by": request.state.api_key.id,
        }
        ITEMS.append(created)
        return JSONResponse(created, status_code=201)


@scopes.require()  # any valid key
async def me(request: Request) -> JSONResponse:
    key = request.state.api_key
    return JSONResponse(
        {"id": key.id, "name": key.name, "owner": key.owner, "scopes": sorted(key.scopes)}
    )


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/v1/items", Items),
        Route("/v1/me", me),
    ]
)
app.add_middleware(ASGIMiddleware, keysentry=ks)


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
    import uvicorn

    parser = argparse.ArgumentParser(description="Starlette behind keysentry")
    parser.add_argument("--mint", action="store_true", help="create two keys and print them")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.mint:
        mint(f"http://127.0.0.1:{args.port}")
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
