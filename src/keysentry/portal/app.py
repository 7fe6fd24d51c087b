"""The portal between its two drivers: routing, who the caller is, CSRF, the security headers,
the audit event, and each route's handler. No I/O: it yields what it waits for (``steps.py``).

A caller is either an API key with the ``admin`` scope (it acts for its own account, the
key's owner), or whoever the host's ``owner_of(request)`` says is signed in. A key is the one
that a guard's middleware outside the portal already authenticated, or else the one the
request presents, checked here by the guard as in-process callers check keys
(``ks.authenticate``: format, digest, revoked, expired, disabled), and against the key's
allowed networks. Managing keys spends no credit and is not rate limited.
"""

from __future__ import annotations

import importlib.resources
import logging
import secrets as random
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .. import _fields as check
from .._scopes import Requirement
from ..core import Keysentry
from ..decision import Verdict, client_allowed
from ..errors import Denial, StoreUnavailable
from ..events import PortalEvent, PortalHook
from ..lifecycle import IssuedKey
from ..records import KeyIdentity, Rate
from . import actions, api, openapi
from .csrf import FIELD, HEADER, Csrf
from .fields import SETTABLE, Grants
from .http import Request, Response
from .pages import Pages, done, form_values, grace_value
from .routes import API, FORM, OPENAPI, STATIC, Route, match
from .steps import SIGNED_IN, Call, Refusal, Step

__all__ = ["Portal"]

log = logging.getLogger("keysentry.portal")

SIGN_IN = Denial.of(
    "MISSING_API_KEY",
    "Sign in, or send an API key with the admin scope: 'Authorization: Bearer <key>'.",
)
ADMIN = Requirement.of(["admin"]).insufficient
NO_ACCOUNT = Denial.of("NO_ACCOUNT", "The API key belongs to no account: it has no owner.")
CSRF_FAILED = Denial.of(
    "CSRF_FAILED",
    "The request's CSRF token is missing or wrong: reload the page and try again "
    "(scripts send the page's csrf-token as X-CSRF-Token).",
)
TOO_LARGE = Denial.of("REQUEST_TOO_LARGE", "The request body is too large.")
NOT_FOUND = Denial.of("NOT_FOUND", "There is nothing here.")


class Portal:
    """Self-service key management for the accounts of one guard: both drivers' logic.

    :param keysentry: the guard whose keys are managed.
    :param grantable: the scopes an owner may give its keys (a key caller: those it holds).
    :param rate_limits: rate limits an owner may choose for a key (``"60/minute"``, ...); the
        guard's default is always a choice. None offered: owners cannot set one.
    :param max_grace: the longest grace period of a rotation.
    :param title: the dashboard's heading.
    :param sign_in_url: where the dashboard sends a visitor who is not signed in (else a
        401 page).
    :param secret: the CSRF tokens' key, 16 bytes or more, the same in every process serving
        the portal; by default derived from the guard's digest secret, or random per process
        when the guard has none.
    :param on_action: called with a :class:`~keysentry.events.PortalEvent` per request.
    """

    def __init__(
        self,
        keysentry: Keysentry,
        *,
        grantable: Iterable[str] = (),
        rate_limits: Iterable[str] = (),
        max_grace: float | timedelta = timedelta(days=7),
        title: str = "API keys",
        sign_in_url: str | None = None,
        secret: str | bytes | None = None,
        on_action: PortalHook | None = None,
    ) -> None:
        if not isinstance(keysentry, Keysentry):
            raise TypeError(f"keysentry must be a Keysentry, not {type(keysentry).__name__}")
        self.keysentry = keysentry
        self.grantable = check.scopes(list(grantable))
        limits: dict[str, tuple[Rate, ...]] = {}
        for spec in rate_limits:
            limits[check.text(spec, "rate_limits").strip()] = check.rates(spec) or ()
        self.rate_limits = limits
        self.max_grace = check.grace_seconds(max_grace)
        self.title = check.text(title, "title")
        self.sign_in_url = sign_in_url
        if secret is None:
            digest = keysentry.digest
            key = digest(b"keysentry portal: csrf") if digest.keyed else random.token_bytes(32)
        else:
            key = secret.encode() if isinstance(secret, str) else bytes(secret)
            if len(key) < 16:
                raise ValueError("secret: the CSRF secret must be at least 16 bytes")
        self.csrf = Csrf(key)
        self.on_action = on_action
        self.pages = Pages(self.title, self.max_grace, list(limits), self._today)
        settings = keysentry.settings
        self._auth = settings.header.lower().encode()
        named = settings.api_key_header
        self._key = None if named is None else named.lower().encode()
        files = importlib.resources.files("keysentry.portal") / "static"
        self._static = {
            path: (kind, (files / path.rsplit("/", 1)[1]).read_bytes())
            for path, kind in STATIC.items()
        }
        self._openapi = openapi.document(
            openapi.Described(self.title, self.grantable, list(limits), self.max_grace, named)
        )

    def _today(self) -> date:
        """The guard's UTC day: the last day of its usage windows."""
        return datetime.fromtimestamp(self.keysentry.settings.clock(), timezone.utc).date()

    def __repr__(self) -> str:
        return f"Portal({self.keysentry!r}, grantable={sorted(self.grantable)!r})"

    # -- a request ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Step[Response]:
        """The answer to ``request``, with the security headers, its event emitted."""
        if request.method == "GET" and request.path in self._static:
            kind, body = self._static[request.path]
            return Response(200, [("content-type", kind)], body).secured()
        if request.method == "GET" and request.path == OPENAPI:
            return Response(200, [("content-type", "application/json")], self._openapi).secured()
        routes, key_id = match(request.path)
        route = next((r for r in routes if r.method == request.method), None)
        face = API if request.path.startswith("/api/") else FORM
        caller: api.Caller | None = None
        issued: IssuedKey | None = None
        action = route.action if route else "refused"
        try:
            if route is None:
                if routes:
                    allowed = ", ".join(sorted({r.method for r in routes}))
                    denial = Denial.of(
                        "METHOD_NOT_ALLOWED",
                        f"{request.method} is not allowed here (allowed: {allowed}).",
                        headers=(("Allow", allowed),),
                    )
                    raise Refusal(denial)
                raise Refusal(NOT_FOUND)
            face = route.face
            if request.body is None:
                raise Refusal(TOO_LARGE)
            caller = yield from self._caller(request)
            if route.method != "GET" and caller.session:
                if face == API:
                    presented = request.header(HEADER)
                else:
                    presented = next(iter(request.form().get(FIELD, [])), None)
                if not self.csrf.valid(request, caller.account, presented):
                    raise Refusal(CSRF_FAILED)
            if face == API:
                handler = api.HANDLERS[route.action]
                response, issued = yield from handler(request, caller, key_id, self.max_grace)
            else:
                response, issued = yield from self._page(route, request, caller, str(key_id))
        except Refusal as refused:
            response = self._refused(face, request, refused.denial)
        except StoreUnavailable:
            response = self._refused(face, request, self.keysentry.settings.unavailable)
        self._emit(action, response, request, caller, key_id, issued)
        return response.secured()

    def _caller(self, request: Request) -> Step[api.Caller]:
        identity = request.identity
        if identity is None:
            token = self._credential(request)
            if isinstance(token, Denial):
                raise Refusal(token)
            if token is not None:
                identity = yield from self._key_identity(request, token)
        if identity is not None:
            if not identity.has_scope("admin"):
                raise Refusal(ADMIN)
            if not identity.owner:
                raise Refusal(NO_ACCOUNT)
            scopes = self.grantable
            if not identity.all_scopes:
                scopes = scopes & identity.effective_scopes
            grants = Grants(scopes, self.rate_limits)
            return api.Caller(identity.owner, f"key:{identity.id}", grants, session=False)
        account = yield SIGNED_IN
        if account is None or account == "":
            raise Refusal(SIGN_IN)
        if not isinstance(account, str):
            raise TypeError(
                f"owner_of must return the account (a str) or None, not {type(account).__name__}"
            )
        return api.Caller(account, "session", Grants(self.grantable, self.rate_limits), True)

    def _credential(self, request: Request) -> bytes | Denial | None:
        reader = self.keysentry.settings.reader
        auth = request.header_values(self._auth)
        key = request.header_values(self._key) if self._key is not None else []
        query = reader.query_values(request.query.encode("latin-1", "replace"))
        if not (auth or key or query):
            return None
        return reader.read_all(auth, key, query)

    def _key_identity(self, request: Request, token: bytes) -> Step[KeyIdentity]:
        verdict: Verdict | Denial = yield Call("authenticate", (token,))
        if isinstance(verdict, Denial):
            raise Refusal(verdict)
        if verdict.restricted:
            denial = client_allowed(verdict, self.client(request))
            if denial is not None:
                raise Refusal(denial)
        return verdict.identity

    def client(self, request: Request) -> str | None:
        """The client's address: the peer, or behind the guard's trusted proxies the address
        they name."""
        proxies = self.keysentry.settings.proxies
        if proxies is None:
            return request.peer
        return proxies.client(request.peer, request.header_values(proxies.header_name))

    # -- the dashboard's routes ---------------------------------------------------------------

    def _page(
        self, route: Route, request: Request, caller: api.Caller, key_id: str
    ) -> Step[tuple[Response, IssuedKey | None]]:
        nonce, new = self.csrf.nonce(request)
        token = self.csrf.token(caller.account, nonce)
        action = route.action
        issued = None
        try:
            if action == "dashboard":
                response = yield from self.pages.dashboard(request, caller, token)
            elif action == "create":
                values, shown = form_values(request.form())
                try:
                    issued = yield from actions.create(caller.account, caller.grants, values)
                except Refusal as refused:
                    response = yield from self.pages.dashboard(
                        request,
                        caller,
                        token,
                        error=refused.denial,
                        form=shown,
                        status_code=refused.denial.status,
                    )
                    return response, None
                response = yield from self.pages.dashboard(request, caller, token, issued=issued)
            elif action == "rotate":
                seconds = grace_value(request.form())
                grace = api.grace(seconds, self.max_grace)
                issued = yield from actions.rotate(caller.account, key_id, grace)
                response = yield from self.pages.dashboard(request, caller, token, issued=issued)
            else:
                change = {
                    "disable": actions.disable,
                    "enable": actions.enable,
                    "revoke": actions.revoke,
                }[action]
                yield from change(caller.account, key_id)
                response = done(request, action, key_id)
        except Refusal as refused:
            response = yield from self.pages.dashboard(
                request, caller, token, error=refused.denial, status_code=refused.denial.status
            )
        if new:
            response.headers.append(self.csrf.cookie(nonce, request))
        return response, issued

    def _refused(self, face: str, request: Request, denial: Denial) -> Response:
        response = self._refusal(face, request, denial)
        response.code = denial.code
        return response

    def _refusal(self, face: str, request: Request, denial: Denial) -> Response:
        if face == API:
            return Response.rendered(self.keysentry.render(denial))
        if denial is SIGN_IN:
            if self.sign_in_url:
                return Response.redirect(self.sign_in_url)
            return self.pages.message(
                401, "Sign in", "Sign in to manage your API keys.", request.root
            )
        if denial is CSRF_FAILED:
            message = "This form has expired or did not come from this page. Reload and retry."
            link = (f"{request.root}/", "Back to your keys")
            return self.pages.message(403, "Please try again", message, request.root, link)
        response = self.pages.message(
            denial.status, denial.code.replace("_", " ").capitalize(), denial.message, request.root
        )
        response.headers.extend((k.lower(), v) for k, v in denial.headers)
        return response

    # -- the audit event ----------------------------------------------------------------------

    def _emit(
        self,
        action: str,
        response: Response,
        request: Request,
        caller: api.Caller | None,
        key_id: str | None,
        issued: IssuedKey | None,
    ) -> None:
        hook = self.on_action
        if hook is None:
            return
        allowed = response.code is None and response.status < 400
        event = PortalEvent(
            action=action,
            allowed=allowed,
            code=response.code,
            status=response.status,
            account=caller.account if caller else None,
            actor=caller.actor if caller else None,
            key_id=key_id if key_id and len(key_id) <= 40 else None,
            new_key_id=issued.record.id if issued else None,
            fields=_fields_of(action, request),
            method=request.method,
            path=request.root + request.path,
            client=self.client(request),
        )
        try:
            hook(event)
        except Exception:
            log.warning("the portal's on_action callback raised", exc_info=True)


def _fields_of(action: str, request: Request) -> tuple[str, ...]:
    if action not in ("create", "update") or not request.body:
        return ()
    names: Iterable[Any]
    if request.media_type == "application/json":
        try:
            body = request.json()
        except ValueError:
            return ()
        names = body.keys() if isinstance(body, dict) else ()
    else:
        form = request.form()
        names = [n for n, v in form.items() if any(v)]
    known = set(SETTABLE) | {"expires_in_days"}
    return tuple(sorted(n for n in names if n in known))
