"""Finding a guard already installed under an app, so that none is installed twice.

Two middleware on one app judge every request twice: a limit of 4 a minute admits 2, a key's
credits fall by 2 a request. The integrations look once, when they are set up, down the chain
of wrappers under the app they are given, by the attributes such wrappers keep: ``.app``
(Starlette's and werkzeug's middleware, ours), ``.wsgi_app`` (a Flask app),
``.middleware_stack`` (a Starlette app once built) and the middleware a Starlette app has been
told to add (``.user_middleware``). Nothing here runs per request.
"""

from __future__ import annotations

__all__ = ["installed_under", "refuse_twice"]

#: Attributes that lead from a wrapper to what it wraps.
_LINKS = ("app", "wsgi_app", "middleware_stack")

#: How many objects to look at at most: chains are short, and a proxy may answer any name.
_MAX_STEPS = 64


def _attribute(obj: object, name: str) -> object:
    try:
        return getattr(obj, name, None)
    except Exception:  # a proxy outside its context, a property that fails: no link
        return None


def installed_under(app: object, kind: type, name: str = "app") -> str | None:
    """Where an instance of ``kind`` is in the chain under ``app`` (``app`` itself included),
    spelt from ``name`` (``"app.wsgi_app"``, ``"app.user_middleware"``), or None."""
    seen: set[int] = set()
    todo: list[tuple[object, str]] = [(app, name)]
    while todo and len(seen) < _MAX_STEPS:
        obj, path = todo.pop(0)
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, kind):
            return path
        declared = _attribute(obj, "user_middleware")
        if isinstance(declared, list):
            for entry in declared:
                cls = _attribute(entry, "cls")
                if isinstance(cls, type) and issubclass(cls, kind):
                    return f"{path}.user_middleware"
        todo.extend((_attribute(obj, link), f"{path}.{link}") for link in _LINKS)
    return None


def refuse_twice(app: object, kind: type, ways: str) -> None:
    """Raise :class:`RuntimeError` if a ``kind`` is under ``app`` already; ``ways`` says how
    to install it once."""
    found = installed_under(app, kind)
    if found is not None:
        raise RuntimeError(
            f"keysentry's {kind.__name__} is already installed under this app ({found}): "
            f"a second one would judge every request twice. Install it once: {ways}"
        )
