"""The JSON API: each route's handler, from a checked caller to a response.

Keys are shown as :func:`key_json` (never a digest); a created or rotated key is answered
once, as ``{"key": "<the full key>", "record": {...}}``. Refusals are the guard's own body and
codes (``ks.render``), from the handlers' :class:`~keysentry.portal.steps.Refusal`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ..accounts import AccountRecord
from ..cli_output import history_json, status
from ..errors import Denial
from ..history import UsageHistory
from ..lifecycle import IssuedKey
from ..records import utcnow
from . import actions, fields
from .actions import MAX_PAGE, MAX_USAGE_DAYS, AccountView, KeyView
from .http import Request, Response
from .steps import Refusal, Step

__all__ = ["HANDLERS", "Caller", "account_json", "grace", "key_json", "usage_json"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def key_json(view: KeyView, now: datetime | None = None) -> dict[str, Any]:
    """A key as its owner sees it: never the key, never its digest."""
    record = view.record
    return {
        "id": record.id,
        "prefix": record.prefix,
        "name": record.name,
        "status": status(record, now or utcnow()),
        "scopes": sorted(record.scopes),
        "created_at": _iso(record.created_at),
        "expires_at": _iso(record.expires_at),
        "last_used_at": _iso(record.last_used_at),
        "revoked_at": _iso(record.revoked_at),
        "disabled": record.disabled,
        "rate_limit": None if record.rate_limit is None else [str(r) for r in record.rate_limit],
        "allowed_networks": [str(n) for n in record.allowed_networks],
        "credits": view.credits,
        "request_count": record.request_count,
        "rotated_to": record.rotated_to,
    }


def usage_json(key_id: str, history: UsageHistory) -> dict[str, Any]:
    """A key's history: each day (ISO date, oldest first) with its requests and, where the
    guard counts them, its requests per route template; and the total."""
    return {"key_id": key_id, **history_json(history)}


def account_json(view: AccountView) -> dict[str, Any]:
    """The account as its owner sees it; ``credits`` null: each key spends its own (or none);
    ``usage`` null: the store keeps no history."""
    record = view.record or AccountRecord(view.owner)
    usage = view.usage
    return {
        "owner": view.owner,
        "credits": record.credits,
        "disabled": record.disabled,
        "rate_limit": [str(r) for r in record.rate_limit] if record.rate_limit else None,
        "refill": None if record.refill is None else str(record.refill),
        "refilled_at": _iso(record.refilled_at),
        "usage": None if usage is None else {**history_json(usage), "keys": dict(usage.keys)},
    }


def issued_json(issued: IssuedKey) -> dict[str, Any]:
    view = KeyView(issued.record, issued.record.credits)
    return {"key": issued.key.reveal(), "record": key_json(view)}


class Caller:
    """Who the request acts for, as the app found it."""

    __slots__ = ("account", "actor", "grants", "session")

    def __init__(self, account: str, actor: str, grants: fields.Grants, session: bool) -> None:
        self.account = account
        self.actor = actor
        self.grants = grants
        self.session = session

    def __repr__(self) -> str:
        return f"Caller(account={self.account!r}, actor={self.actor!r})"


def grace(value: object, most: float) -> float:
    """A rotation's grace period in seconds, from 0 to ``most``."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise fields.invalid("grace must be a number of seconds", "grace")
    if not 0 <= value <= most:
        raise fields.invalid(f"grace must be from 0 to {most:g} seconds", "grace")
    return float(value)


def _body(request: Request, optional: bool = False) -> Mapping[str, object]:
    if not request.body and optional:
        return {}
    if request.media_type != "application/json":
        raise Refusal(Denial.of("UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json."))
    try:
        value = request.json()
    except ValueError:
        raise fields.invalid("the body is not valid JSON") from None
    return actions.as_dict(value)


def _page_size(text: str | None) -> int:
    if text is None:
        return 20
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise fields.invalid(f"limit must be from 1 to {MAX_PAGE}", "limit")
    return int(text)


def _days(text: str | None) -> int:
    if text is None:
        return 30
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_USAGE_DAYS:
        raise fields.invalid(f"days must be from 1 to {MAX_USAGE_DAYS}", "days")
    return int(text)


Handler = Callable[[Request, Caller, str | None, float], Step[tuple[Response, Any]]]


def _list(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    params = request.params()
    page = yield from actions.list_keys(
        caller.account, params.get("after") or None, _page_size(params.get("limit"))
    )
    now = utcnow()
    body = {"keys": [key_json(v, now) for v in page.keys], "next": page.next}
    return Response.json(200, body), None


def _create(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    issued = yield from actions.create(caller.account, caller.grants, _body(request))
    return Response.json(201, issued_json(issued)), issued


def _show(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    view = yield from actions.show(caller.account, str(key_id))
    return Response.json(200, key_json(view)), None


def _update(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    view = yield from actions.update(caller.account, caller.grants, str(key_id), _body(request))
    return Response.json(200, key_json(view)), None


def _delete(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    yield from actions.delete(caller.account, str(key_id))
    return Response(204, [], b""), None


def _state(
    change: Callable[[str, str], Step[KeyView]],
) -> Handler:
    def handler(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
        view = yield from change(caller.account, str(key_id))
        return Response.json(200, key_json(view)), None

    return handler


def _rotate(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    body = _body(request, optional=True)
    unknown = sorted(body.keys() - {"grace"})
    if unknown:
        raise fields.invalid(f"unknown field {unknown[0]!r} (rotate takes grace)", unknown[0])
    seconds = grace(body.get("grace"), most)
    issued = yield from actions.rotate(caller.account, str(key_id), seconds)
    return Response.json(201, issued_json(issued)), issued


def _usage(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    days = _days(request.params().get("days"))
    history = yield from actions.usage(caller.account, str(key_id), days)
    return Response.json(200, usage_json(str(key_id), history)), None


def _account(request: Request, caller: Caller, key_id: str | None, most: float) -> Step[Any]:
    view = yield from actions.account_view(caller.account, _days(request.params().get("days")))
    return Response.json(200, account_json(view)), None


#: Action -> handler; each returns the response and the key it created, if any.
HANDLERS: dict[str, Handler] = {
    "list": _list,
    "create": _create,
    "show": _show,
    "update": _update,
    "delete": _delete,
    "disable": _state(actions.disable),
    "enable": _state(actions.enable),
    "revoke": _state(actions.revoke),
    "rotate": _rotate,
    "usage": _usage,
    "account": _account,
}
