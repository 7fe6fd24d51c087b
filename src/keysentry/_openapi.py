"""A guard's refusals as OpenAPI responses: what ``FastAPIKeys`` adds to the operations it
protects, so generated clients and ``/docs`` know the 4xx/503 answers, their body and headers.

Framework-free (the document is a dict); private to ``fastapi.py``. The responses are those the
guard can answer on a protected operation, whatever the key:

* 400 ``INVALID_REQUEST``, 401 and 403 (``API_KEY_DISABLED``, ``IP_NOT_ALLOWED``, and
  ``INSUFFICIENT_SCOPE`` for an operation that requires scopes): always;
* 402 ``INSUFFICIENT_CREDITS``: always, as any key may be issued (or updated) with credits;
* 429: with a limiter (``RATE_LIMITED``) or failed-attempt throttling
  (``TOO_MANY_FAILED_ATTEMPTS``);
* 503 ``AUTH_UNAVAILABLE``: unless the store is in memory and no remote limiter fails closed.

Each carries the error body's schema (one component, ``KeysentryError``), an example of each
code rendered by the guard itself (its ``error_body``, its realm) and the headers that come with
it; with a limiter, the RateLimit fields go on successful responses and on the refusals
made after the limiter counted the request (402, and a 403 for a missing scope).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._scopes import Requirement
from .attempts import too_many
from .core import Keysentry
from .credentials import MISSING, TWO_CREDENTIALS
from .decision import DISABLED, IP_NOT_ALLOWED, NO_CREDITS, UNKNOWN_KEY
from .errors import ERRORS, Denial
from .stores.memory import MemoryStore

__all__ = ["SCHEMA_NAME", "OpenAPIResponses", "error_schema"]

#: The error body's component: ``#/components/schemas/KeysentryError``.
SCHEMA_NAME = "KeysentryError"
_REF = f"#/components/schemas/{SCHEMA_NAME}"

#: Operation keys of a Path Item that are operations.
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

_EXPIRED = Denial.of(
    "EXPIRED_API_KEY",
    "The API key has expired: ask its owner for a new one.",
    {"expired_at": "2030-01-01T00:00:00+00:00"},
)
_RATE_LIMITED = Denial.of(
    "RATE_LIMITED", "Too many requests for this API key: retry in 1 s.", {"retry_after": 1}
)


def error_schema() -> dict[str, Any]:
    """The JSON Schema of the default error body (``responses.default_error_body``)."""
    return {
        "title": SCHEMA_NAME,
        "description": "A request keysentry refused: `code` says why, `message` names the cause.",
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": list(ERRORS)},
                    "message": {"type": "string"},
                    "details": {
                        "type": "object",
                        "properties": {
                            "required": {
                                "description": "INSUFFICIENT_SCOPE: the scopes the operation "
                                "needs, all of them.",
                                "type": "array",
                                "items": {"type": "string"},
                            },
                            "retry_after": {
                                "description": "429: seconds to wait, as in `Retry-After`.",
                                "type": "integer",
                                "minimum": 0,
                            },
                            "expired_at": {
                                "description": "EXPIRED_API_KEY: when the key expired.",
                                "type": "string",
                                "format": "date-time",
                            },
                        },
                        "additionalProperties": True,
                    },
                },
            },
        },
    }


def _header(description: str, schema: dict[str, Any], example: Any, required: bool) -> Any:
    header: dict[str, Any] = {"description": description, "schema": schema, "example": example}
    if required:
        header["required"] = True
    return header


def _status(item: tuple[Any, Any]) -> tuple[bool, str]:
    """Responses in order of status, ``default`` last."""
    return str(item[0]) == "default", str(item[0])


class OpenAPIResponses:
    """The responses one guard adds to the operations it protects.

    :param keysentry: the guard: its settings say which refusals can happen and render the
        examples.
    :param schema: the error body's JSON Schema; by default :func:`error_schema` for the
        default body, and a bare object for a custom ``error_body``.
    """

    def __init__(self, keysentry: Keysentry, schema: Mapping[str, Any] | None = None) -> None:
        self.keysentry = keysentry
        settings = keysentry.settings
        if schema is None:
            schema = (
                error_schema()
                if settings.error_body is None
                else {
                    "title": SCHEMA_NAME,
                    "description": "A request keysentry refused, as this API's error body "
                    "says it (see the examples).",
                    "type": "object",
                }
            )
        self.schema = dict(schema)
        limiter = keysentry.limiter
        self.limited = limiter is not None
        self.throttled = keysentry.attempts is not None
        remote = limiter is not None and not getattr(limiter, "local", False)
        self.unavailable = not isinstance(keysentry.store, MemoryStore) or (
            remote and not settings.fail_open
        )
        self._fields = self._rate_fields()

    # -- headers -------------------------------------------------------------------------------

    def _challenge(self, denial: Denial, required: bool) -> dict[str, Any]:
        return {
            "WWW-Authenticate": _header(
                "The Bearer challenge (RFC 6750): the realm, and the error code for a key "
                "that was sent.",
                {"type": "string"},
                self.keysentry.settings.render.challenge(denial),
                required,
            )
        }

    def _retry_after(self) -> dict[str, Any]:
        return {
            "Retry-After": _header(
                "Seconds to wait before trying again (whole seconds, rounded up).",
                {"type": "integer", "minimum": 0},
                1,
                True,
            )
        }

    def _rate_fields(self) -> dict[str, Any]:
        """The RateLimit fields, on responses to a rate-limited key."""
        if not self.limited:
            return {}
        fields = {
            "RateLimit-Policy": _header(
                "The key's rate-limit policies (draft-ietf-httpapi-ratelimit-headers-10): "
                "`q` requests per `w` seconds.",
                {"type": "string"},
                '"per-minute";q=60;w=60',
                False,
            ),
            "RateLimit": _header(
                "Where the key stands in each policy: `r` requests it may still send at "
                "once, `t` seconds until `r` grows.",
                {"type": "string"},
                '"per-minute";r=59;t=1',
                False,
            ),
        }
        if self.keysentry.settings.legacy_rate_headers:
            for name, description, example in (
                ("X-RateLimit-Limit", "Requests per window, of the tightest policy.", 60),
                ("X-RateLimit-Remaining", "Requests left, in the tightest policy.", 59),
                ("X-RateLimit-Reset", "Seconds until more are allowed.", 1),
            ):
                fields[name] = _header(description, {"type": "integer"}, example, False)
        return fields

    def _granted_by(self, required: Iterable[str]) -> str:
        """What else grants each of ``required``, by the guard's scope implications: ``;
        read is also granted by admin, write``; empty when nothing does."""
        implications = self.keysentry.settings.implications
        parts = []
        for scope in required:
            granting = implications.granting(scope)
            if granting:
                by = ", ".join(f"`{s}`" for s in granting)
                parts.append(f"`{scope}` is also granted by {by}")
        return "".join(f"; {part}" for part in parts)

    # -- responses -----------------------------------------------------------------------------

    def _response(
        self, description: str, denials: Iterable[Denial], headers: dict[str, Any]
    ) -> dict[str, Any]:
        render = self.keysentry.render
        examples = {
            denial.code: {
                "summary": ERRORS[denial.code].message,
                "value": json.loads(render(denial).body),
            }
            for denial in denials
        }
        response: dict[str, Any] = {"description": description}
        if headers:
            response["headers"] = headers
        response["content"] = {"application/json": {"schema": {"$ref": _REF}, "examples": examples}}
        return response

    def responses(self, scopes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Status -> response, for an operation that requires ``scopes`` (all of them)."""
        required = list(dict.fromkeys(scopes))
        out = {
            "400": self._response(
                "`INVALID_REQUEST`: the request carries two different API keys.",
                [TWO_CREDENTIALS],
                self._challenge(TWO_CREDENTIALS, True),
            ),
            "401": self._response(
                "No API key (`MISSING_API_KEY`), or one that is malformed, unknown or revoked "
                "(`INVALID_API_KEY`: the message names the cause) or has expired "
                "(`EXPIRED_API_KEY`).",
                [MISSING, UNKNOWN_KEY, _EXPIRED],
                self._challenge(UNKNOWN_KEY, True),
            ),
            "402": self._response(
                "`INSUFFICIENT_CREDITS`: the key has no credits left.",
                [NO_CREDITS],
                dict(self._fields),
            ),
        }
        forbidden = [DISABLED, IP_NOT_ALLOWED]
        causes = [
            "`API_KEY_DISABLED` (the key is disabled)",
            "`IP_NOT_ALLOWED` (not from this client address)",
        ]
        headers: dict[str, Any] = {}
        if required:
            insufficient = Requirement.of(required).insufficient
            forbidden.append(insufficient)
            causes.append(
                f"`INSUFFICIENT_SCOPE` (the key lacks one of: {', '.join(required)}"
                f"{self._granted_by(required)})"
            )
            headers = self._challenge(insufficient, False)
            # Refused by the route, after the middleware counted the request.
            headers.update(self._fields)
        out["403"] = self._response(
            f"The key may not be used here: {', '.join(causes)}.", forbidden, headers
        )
        if self.limited or self.throttled:
            refusals: list[Denial] = []
            parts: list[str] = []
            headers = self._retry_after()
            if self.limited:
                refusals.append(_RATE_LIMITED)
                parts.append("`RATE_LIMITED`: over the key's rate limit")
                headers.update(self._fields)
            if self.throttled:
                refusals.append(too_many(2))
                parts.append("`TOO_MANY_FAILED_ATTEMPTS`: too many invalid keys from this client")
            out["429"] = self._response("; ".join(parts) + ".", refusals, headers)
        if self.unavailable:
            out["503"] = self._response(
                "`AUTH_UNAVAILABLE`: the key store (or the rate limiter) cannot answer; "
                "retry after `Retry-After` seconds.",
                [self.keysentry.settings.unavailable],
                self._retry_after(),
            )
        return out

    # -- the document --------------------------------------------------------------------------

    def document(
        self,
        openapi: dict[str, Any],
        scopes_of: Callable[[Mapping[str, Any]], Iterable[str] | None],
    ) -> dict[str, Any]:
        """Add the responses to each operation of ``openapi`` for which ``scopes_of(operation)``
        gives the scopes it requires (None: not protected by this guard), and the error
        body's schema to its components. What the document already declares is kept: a
        response for a status, a header of a successful response, a component of that name.
        Changes ``openapi`` in place, and returns it."""
        protected = False
        for item in openapi.get("paths", {}).values():
            for method, operation in item.items():
                if method not in _METHODS or not isinstance(operation, dict):
                    continue
                scopes = scopes_of(operation)
                if scopes is None:
                    continue
                protected = True
                responses = operation.setdefault("responses", {})
                for status, answer in self.responses(scopes).items():
                    responses.setdefault(status, answer)
                # In order of status, as FastAPI lists them ("default" last).
                operation["responses"] = responses = dict(
                    sorted(
                        responses.items(),
                        key=lambda item: (str(item[0]) == "default", str(item[0])),
                    )
                )
                fields = self._fields
                for status, answer in responses.items():
                    if fields and str(status).startswith("2") and isinstance(answer, dict):
                        headers = answer.setdefault("headers", {})
                        for name, header in fields.items():
                            headers.setdefault(name, header)
        if protected:
            schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
            schemas.setdefault(SCHEMA_NAME, self.schema)
        return openapi
