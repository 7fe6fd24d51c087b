"""Self-service key management: a JSON API and a dashboard that a host application mounts, so
that each signed-in user (or a key with the ``admin`` scope) manages the keys of their own
account, and nothing else::

    from keysentry.portal import portal

    app.mount("/account/keys", portal(ks, owner_of=current_account, grantable=["read"]))

``owner_of(request)`` is the host's own sign-in: it returns the account (the ``owner`` of the
keys) or None. :func:`portal_wsgi` is the same portal for Flask and WSGI apps. Needs the
``portal`` extra (Jinja2 and Starlette; the WSGI face needs werkzeug).

The logic is written once (``app.py``, ``actions.py``), as steps that yield the lifecycle calls
they need; ``asgi.py`` awaits them, ``wsgi.py`` makes them blocking.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from ..core import Keysentry
from ..events import PortalHook
from .app import Portal
from .chart import usage_chart

if TYPE_CHECKING:
    from .asgi import OwnerOf, PortalApp
    from .wsgi import PortalWSGI, WSGIOwnerOf

__all__ = ["Portal", "portal", "portal_wsgi", "usage_chart"]


def portal(
    keysentry: Keysentry,
    *,
    owner_of: OwnerOf | None = None,
    grantable: Iterable[str] = (),
    rate_limits: Iterable[str] = (),
    max_grace: float | timedelta = timedelta(days=7),
    title: str = "API keys",
    sign_in_url: str | None = None,
    secret: str | bytes | None = None,
    on_action: PortalHook | None = None,
) -> PortalApp:
    """The portal as an ASGI app, to mount in a Starlette or FastAPI app.

    :param owner_of: the host's sign-in, called with a Starlette ``Request`` (sync or async):
        the account signed in, or None. Without it only admin keys are served.

    Every other keyword is documented on :class:`Portal`. Mount it where the guard's
    middleware does not ask for a key (``exempt=["/account/keys/*"]``): the portal asks for
    one itself, or for a sign-in.
    """
    from .asgi import PortalApp

    settings = Portal(
        keysentry,
        grantable=grantable,
        rate_limits=rate_limits,
        max_grace=max_grace,
        title=title,
        sign_in_url=sign_in_url,
        secret=secret,
        on_action=on_action,
    )
    return PortalApp(settings, owner_of)


def portal_wsgi(
    keysentry: Keysentry,
    *,
    owner_of: WSGIOwnerOf | None = None,
    grantable: Iterable[str] = (),
    rate_limits: Iterable[str] = (),
    max_grace: float | timedelta = timedelta(days=7),
    title: str = "API keys",
    sign_in_url: str | None = None,
    secret: str | bytes | None = None,
    on_action: PortalHook | None = None,
) -> PortalWSGI:
    """The portal as a WSGI app (for Flask: ``DispatcherMiddleware``); ``owner_of`` is called
    with a werkzeug ``Request``. The keywords are :func:`portal`'s."""
    from .wsgi import PortalWSGI

    settings = Portal(
        keysentry,
        grantable=grantable,
        rate_limits=rate_limits,
        max_grace=max_grace,
        title=title,
        sign_in_url=sign_in_url,
        secret=secret,
        on_action=on_action,
    )
    return PortalWSGI(settings, owner_of)
