"""The portal mounted in a host app, called through each face's own test client: Starlette's
``TestClient`` (ASGI) and werkzeug's ``Client`` under ``DispatcherMiddleware`` (WSGI).

The host's sign-in is a cookie ``who=<account>`` that ``owner_of`` reads; a :class:`Session`
carries it with the portal's CSRF cookie and token, as a browser that loaded the dashboard
would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from keysentry import Keysentry
from keysentry.events import PortalEvent

MOUNT = "/account/keys"
FACES = ["asgi", "wsgi"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def code(self) -> str:
        return str(self.json()["error"]["code"])


@dataclass(frozen=True)
class Session:
    account: str
    nonce: str
    token: str

    def cookie(self) -> str:
        return f"who={self.account}; keysentry_csrf={self.nonce}"


class PortalClient:
    def __init__(self, face: str, ks: Keysentry, **options: Any) -> None:
        self.face = face
        self.events: list[PortalEvent] = []
        options.setdefault("on_action", self.events.append)
        if face == "asgi":
            from starlette.applications import Starlette
            from starlette.routing import Mount
            from starlette.testclient import TestClient

            from keysentry.portal import portal

            app = portal(ks, owner_of=lambda request: request.cookies.get("who"), **options)
            self._asgi = TestClient(Starlette(routes=[Mount(MOUNT, app)]))
        else:
            from werkzeug.middleware.dispatcher import DispatcherMiddleware
            from werkzeug.test import Client
            from werkzeug.wrappers import Response

            from keysentry.portal import portal_wsgi

            app = portal_wsgi(ks, owner_of=lambda request: request.cookies.get("who"), **options)
            host = DispatcherMiddleware(Response("host", 404), {MOUNT: app})
            self._wsgi = Client(host, use_cookies=False)

    def call(
        self,
        method: str,
        path: str,
        *,
        session: Session | None = None,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        form: dict[str, Any] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if session is not None:
            sent.setdefault("Cookie", session.cookie())
            if csrf and form is None:
                sent.setdefault("X-CSRF-Token", session.token)
        if form is not None and session is not None and csrf:
            form = {"csrf_token": session.token, **form}
        data: Any = body
        if json_body is not None:
            data = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        elif form is not None:
            from urllib.parse import urlencode

            data = urlencode(form, doseq=True).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        url = MOUNT + path
        if self.face == "asgi":
            self._asgi.cookies.clear()
            r = self._asgi.request(method, url, headers=sent, content=data, follow_redirects=False)
            return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)
        w = self._wsgi.open(url, method=method, headers=sent, data=data)
        return Reply(w.status_code, {k.lower(): v for k, v in w.headers.items()}, w.get_data())

    def sign_in(self, account: str) -> Session:
        """Load the dashboard as ``account``: the CSRF cookie it sets and the token it shows."""
        page = self.call("GET", "/", headers={"Cookie": f"who={account}"})
        assert page.status == 200, page.text
        nonce = re.search(r"keysentry_csrf=([^;]+)", page.headers["set-cookie"])
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert nonce
        assert token
        return Session(account, nonce.group(1), token.group(1))
