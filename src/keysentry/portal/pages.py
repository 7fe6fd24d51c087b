"""The dashboard: server-rendered HTML (Jinja2, autoescaped), forms that post back, no build.

The page lists the account's keys, offers a form to create one and, per key, rotate, disable
or enable, and revoke, each behind a ``<details>`` disclosure that asks for confirmation
without a script. A created or rotated key is shown once, in the response to the form that
made it; the page's small script then makes the address the dashboard's again, so a reload
shows the list, not the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..cli_output import status
from ..errors import Denial
from ..history import UsageHistory
from ..lifecycle import IssuedKey
from ..records import utcnow
from ..refills import Refill
from . import actions
from .actions import MAX_PAGE
from .api import Caller
from .chart import usage_chart
from .http import Request, Response
from .steps import Refusal, Step

__all__ = ["CHART_DAYS", "EXPIRIES", "Pages", "done", "form_values", "grace_value"]

#: The days of usage each key's chart shows (today last).
CHART_DAYS = 30

#: Expiry choices of the create form: days (empty: never) and what they read as.
EXPIRIES: tuple[tuple[str, str], ...] = (
    ("", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
)

#: Rotation grace choices, in seconds, up to the portal's ``max_grace``.
_GRACES: tuple[tuple[int, str], ...] = (
    (0, "No time: revoke it now"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (7 * 86400, "7 days"),
    (30 * 86400, "30 days"),
)

#: What a done action says on the page it redirects to.
_DONE = {"disable": "disabled", "enable": "enabled", "revoke": "revoked"}


class Pages:
    """Renders the portal's pages for one portal's settings."""

    def __init__(
        self,
        title: str,
        max_grace: float,
        rate_limits: Sequence[str],
        today: Callable[[], date],
    ) -> None:
        self.env = Environment(
            loader=PackageLoader("keysentry.portal", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["status"] = lambda record: status(record, utcnow())
        self.env.globals["refill_text"] = _refill_text
        self.env.filters["thousands"] = lambda n: f"{n:,}"
        self.title = title
        self.graces = [(s, label) for s, label in _GRACES if s <= max_grace]
        self.rate_limits = list(rate_limits)
        self.today = today

    def message(
        self,
        status_code: int,
        heading: str,
        message: str,
        root: str,
        link: tuple[str, str] | None = None,
    ) -> Response:
        text = self.env.get_template("message.html").render(
            title=self.title,
            root=root,
            csrf=None,
            account=None,
            heading=heading,
            message=message,
            link=link[0] if link else None,
            link_text=link[1] if link else None,
        )
        return Response.html(status_code, text)

    def dashboard(
        self,
        request: Request,
        caller: Caller,
        csrf: str,
        *,
        issued: IssuedKey | None = None,
        error: Denial | None = None,
        form: Mapping[str, Any] | None = None,
        status_code: int = 200,
    ) -> Step[Response]:
        params = request.params() if request.method == "GET" else {}
        after = params.get("after") or None
        try:
            page = yield from actions.list_keys(caller.account, after, MAX_PAGE)
        except Refusal:  # a bad ?after=: the first page
            after = None
            page = yield from actions.list_keys(caller.account, None, MAX_PAGE)
        account = yield from actions.account_of(caller.account)
        used = yield from actions.keys_usage(
            [view.record for view in page.keys], self.today(), CHART_DAYS
        )
        flash = None
        done = _DONE.get(params.get("done", ""))
        if done is not None and len(params.get("key", "")) <= 40:
            flash = f"Key {params['key']} {done}."
        text = self.env.get_template("dashboard.html").render(
            title=self.title,
            root=request.root,
            csrf=csrf,
            account=caller.account,
            keys=page.keys,
            account_record=account,
            usage=_charts(page.keys, used),
            chart_days=CHART_DAYS,
            next=page.next,
            after=after,
            issued=issued,
            error=error,
            flash=flash,
            form={
                "name": "",
                "scopes": [],
                "expires": "",
                "rate_limit": "",
                "networks": "",
                **(form or {}),
            },
            grantable=sorted(caller.grants.scopes),
            rate_limits=self.rate_limits,
            expiries=EXPIRIES,
            graces=self.graces,
        )
        response = Response.html(status_code, text)
        response.code = error.code if error is not None else None
        return response


def _refill_text(refill: Refill) -> str:
    if refill.add:
        return f"{refill.amount:,} added every {refill.interval}"
    return f"topped up to {refill.amount:,} every {refill.interval}"


def _charts(
    keys: Sequence[actions.KeyView], used: Mapping[str, UsageHistory] | None
) -> Mapping[str, tuple[int, Markup | None]] | None:
    """Per key id: its requests over the window, and their chart (None: no request)."""
    if used is None:
        return None
    charts: dict[str, tuple[int, Markup | None]] = {}
    for view in keys:
        history = used.get(view.record.id)
        if history is None:
            continue
        chart = None
        if history.total:
            label = f"Requests per day of key {view.record.name or view.record.id}"
            points = [(d.day, d.requests) for d in history.days]
            chart = Markup(usage_chart(points, width=360, height=120, label=label))  # noqa: S704 (escaped by usage_chart)
        charts[view.record.id] = (history.total, chart)
    return charts


def form_values(form: Mapping[str, list[str]]) -> tuple[dict[str, object], dict[str, Any]]:
    """The create form's fields as the portal's settable values, and as the form shows them
    again (after a refusal)."""
    name = (form.get("name") or [""])[0]
    scopes = form.get("scopes", [])
    days = (form.get("expires_in_days") or [""])[0].strip()
    rate = (form.get("rate_limit") or [""])[0].strip()
    networks = (form.get("allowed_networks") or [""])[0].strip()
    values: dict[str, object] = {"name": name, "scopes": scopes}
    if days:
        values["expires_at"] = int(days) if days.isascii() and days.isdigit() else days
    if rate:
        values["rate_limit"] = rate
    if networks:
        values["allowed_networks"] = networks
    shown = {
        "name": name,
        "scopes": scopes,
        "expires": days,
        "rate_limit": rate,
        "networks": networks,
    }
    return values, shown


def grace_value(form: Mapping[str, list[str]]) -> float | str:
    """The rotate form's grace: seconds, or the text sent (which ``api.grace`` refuses)."""
    text = (form.get("grace") or ["0"])[0]
    return float(text) if text.isascii() and text.isdigit() else text


def done(request: Request, action: str, key_id: str) -> Response:
    return Response.redirect(f"{request.root}/?done={action}&key={key_id}")
