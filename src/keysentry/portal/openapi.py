"""The JSON API's OpenAPI 3.1 document, built from the route table (``routes.py``), so that a
route cannot be answered without being declared, nor declared without being answered."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .._openapi import error_schema
from ..errors import ERRORS, PORTAL_ERRORS
from .actions import MAX_USAGE_DAYS
from .fields import MAX_NAME
from .routes import API, ROUTES


@dataclass(frozen=True, slots=True)
class Described:
    """What the document says of one portal's settings."""

    title: str
    grantable: Collection[str]
    rate_limits: Collection[str]
    max_grace: float
    api_key_header: str | None


__all__ = ["Described", "document"]

_ERROR = {"$ref": "#/components/schemas/KeysentryError"}

_SUMMARIES = {
    "list": "List the account's keys, a page at a time",
    "create": "Create a key: the full key is in this answer and never again",
    "show": "Show one key",
    "update": "Change a key's name, scopes, expiry, networks or rate limit",
    "delete": "Delete a key for good",
    "disable": "Disable a key (403 API_KEY_DISABLED) until enabled",
    "enable": "Enable a disabled key",
    "rotate": "Replace a key by a new one; the old one works for a grace period",
    "revoke": "Revoke a key for good (it stays listed)",
    "usage": "A key's requests per UTC day, over the last `days` days (today last)",
    "account": "The account: its shared credits, refill and limit, and its keys' usage",
}

_OPERATION_IDS = {"list": "listKeys", "usage": "keyUsage", "account": "showAccount"}

#: Refusals each operation can answer, besides 401/403 for who is asking.
_STATUSES = {
    "list": ("400",),
    "create": ("400", "403", "415"),
    "show": ("404",),
    "update": ("400", "403", "404", "409", "415"),
    "delete": ("404", "409"),
    "disable": ("404", "409"),
    "enable": ("404", "409"),
    "rotate": ("400", "404", "409", "415"),
    "revoke": ("404",),
    "usage": ("400", "404", "501"),
    "account": ("400",),
}

_DESCRIPTIONS = {
    "400": "INVALID_REQUEST: a field is wrong (`details.field` names it).",
    "401": "MISSING_API_KEY (no key, nobody signed in) or INVALID_API_KEY / EXPIRED_API_KEY.",
    "403": "INSUFFICIENT_SCOPE (the key lacks `admin`), NO_ACCOUNT, CSRF_FAILED (a signed-in "
    "session without the page's X-CSRF-Token), NOT_GRANTABLE (a scope, rate limit or field "
    "the caller may not set), API_KEY_DISABLED, IP_NOT_ALLOWED.",
    "404": "KEY_NOT_FOUND: the account has no such key (another account's key reads the same).",
    "409": "KEY_STATE_CONFLICT: the key's state forbids it (revoked, expired, already rotated).",
    "415": "UNSUPPORTED_MEDIA_TYPE: send application/json.",
    "501": "USAGE_NOT_KEPT: the key store keeps no usage history.",
    "503": "AUTH_UNAVAILABLE: the key store cannot answer; retry.",
}


def _key_schema() -> dict[str, Any]:
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    return {
        "type": "object",
        "required": ["id", "prefix", "name", "status", "scopes", "created_at"],
        "properties": {
            "id": {"type": "string", "description": "The key's public id."},
            "prefix": {"type": "string", "description": "What lists show: `sk_live_<id>`."},
            "name": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["active", "disabled", "revoked", "expired", "rotated"],
            },
            "scopes": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": nullable_time,
            "last_used_at": nullable_time,
            "revoked_at": nullable_time,
            "disabled": {"type": "boolean"},
            "rate_limit": {"type": ["array", "null"], "items": {"type": "string"}},
            "allowed_networks": {"type": "array", "items": {"type": "string"}},
            "credits": {"type": ["integer", "null"], "description": "null: unmetered."},
            "request_count": {"type": "integer"},
            "rotated_to": {"type": ["string", "null"]},
        },
    }


#: One day of a usage history.
_DAY = {
    "type": "object",
    "required": ["day", "requests"],
    "properties": {
        "day": {"type": "string", "format": "date", "description": "A UTC day."},
        "requests": {"type": "integer"},
        "routes": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "Requests per route template, where the API counts them.",
        },
    },
}


def _account_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["owner", "credits", "disabled", "rate_limit", "refill", "usage"],
        "properties": {
            "owner": {"type": "string"},
            "credits": {
                "type": ["integer", "null"],
                "description": "The balance every key of the account spends; null: each key "
                "spends its own (see the keys' `credits`).",
            },
            "disabled": {"type": "boolean", "description": "true: every key is refused."},
            "rate_limit": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "Limits the account's keys share, on top of their own.",
            },
            "refill": {
                "type": ["string", "null"],
                "description": "`1000/month`: topped up to 1000 each month; `+100/day`: 100 "
                "added each day.",
            },
            "refilled_at": {"type": ["string", "null"], "format": "date-time"},
            "usage": {
                "type": ["object", "null"],
                "description": "null: the key store keeps no usage history.",
                "properties": {
                    "days": {"type": "array", "items": _DAY},
                    "total": {"type": "integer"},
                    "keys": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                        "description": "Each key's requests in the window, by key id.",
                    },
                },
            },
        },
    }


def _settable(portal: Described, creating: bool) -> dict[str, Any]:
    rate: dict[str, Any] = {"type": ["string", "null"], "description": "null: the default."}
    if portal.rate_limits:
        rate["enum"] = [*portal.rate_limits, None]
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
            "scopes": {
                "type": "array",
                "items": {"type": "string", "enum": sorted(portal.grantable)},
                "description": "Only scopes this portal lets the caller grant.",
            },
            "expires_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "A future time with its offset; null: never.",
            },
            "allowed_networks": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Client addresses or CIDRs the key may be used from.",
            },
            "rate_limit": rate,
        },
    }
    if creating:
        schema["required"] = ["name"]
    return schema


def _operation(portal: Described, action: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    json_of = {"application/json": {"schema": {"$ref": "#/components/schemas/Key"}}}
    if action == "list":
        responses["200"] = {
            "description": "One page: pass `next` as `after` for the following one.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}},
        }
    elif action in ("create", "rotate"):
        responses["201"] = {
            "description": "The new key (`key`, shown this once) and its record.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewKey"}}},
        }
    elif action == "delete":
        responses["204"] = {"description": "Deleted."}
    elif action == "usage":
        responses["200"] = {
            "description": "One entry per day of the window, days without use as 0.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Usage"}}},
        }
    elif action == "account":
        responses["200"] = {
            "description": "The account, and its usage over the window.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Account"}}},
        }
    else:
        responses["200"] = {"description": "The key as it is now.", "content": json_of}
    for status in sorted({"401", "403", "503", *_STATUSES[action]}):
        responses[status] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
    operation: dict[str, Any] = {
        "operationId": _OPERATION_IDS.get(action, f"{action}Key"),
        "summary": _SUMMARIES[action],
        "responses": responses,
        "security": [{"bearer": []}, {"apiKey": []}, {"session": [], "csrf": []}],
    }
    if action == "list":
        operation["parameters"] = [
            {"name": "after", "in": "query", "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                       "maximum": 100, "default": 20}},
        ]  # fmt: skip
    if action in ("usage", "account"):
        operation["parameters"] = [
            {"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                      "maximum": MAX_USAGE_DAYS, "default": 30}},
        ]  # fmt: skip
    if action in ("create", "update"):
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _settable(portal, action == "create")}},
        }
    if action == "rotate":
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "grace": {
                                "type": "number",
                                "minimum": 0,
                                "maximum": portal.max_grace,
                                "description": "Seconds the old key keeps working (0: "
                                "revoked at once).",
                            }
                        },
                    }
                }
            },
        }
    return operation


def document(portal: Described) -> bytes:
    """The document, as served at ``/api/openapi.json``."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        if route.face != API:
            continue
        path = route.path.removeprefix("/api")
        item = paths.setdefault(path, {})
        if "{id}" in path:
            item["parameters"] = [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        item[route.method.lower()] = _operation(portal, route.action)
    errors = error_schema()
    errors["properties"]["error"]["properties"]["code"]["enum"] = [*ERRORS, *PORTAL_ERRORS]
    security: dict[str, Any] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key with the `admin` scope: it manages its own account's keys.",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "session",
            "description": "The host application's own sign-in (its cookie's name is its own).",
        },
        "csrf": {
            "type": "apiKey",
            "in": "header",
            "name": "X-CSRF-Token",
            "description": "With a signed-in session, state-changing calls send the dashboard "
            'page\'s `<meta name="csrf-token">`.',
        },
    }
    if portal.api_key_header is not None:
        security["apiKey"] = {"type": "apiKey", "in": "header", "name": portal.api_key_header}
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": f"{portal.title}: key management",
            "version": "1",
            "description": "Manage the keys of your own account: create, list, change, "
            "rotate, revoke, and read their usage. Relative to the portal's mount point; "
            "errors are keysentry's.",
        },
        "servers": [{"url": "."}],
        "paths": paths,
        "components": {
            "schemas": {
                "Key": _key_schema(),
                "NewKey": {
                    "type": "object",
                    "required": ["key", "record"],
                    "properties": {
                        "key": {"type": "string", "description": "The full key: shown once."},
                        "record": {"$ref": "#/components/schemas/Key"},
                    },
                },
                "Page": {
                    "type": "object",
                    "required": ["keys", "next"],
                    "properties": {
                        "keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}},
                        "next": {"type": ["string", "null"]},
                    },
                },
                "Usage": {
                    "type": "object",
                    "required": ["key_id", "days", "total"],
                    "properties": {
                        "key_id": {"type": "string"},
                        "days": {"type": "array", "items": _DAY},
                        "total": {"type": "integer", "description": "Requests in the window."},
                    },
                },
                "Account": _account_schema(),
                "KeysentryError": errors,
            },
            "securitySchemes": security,
        },
    }
    if "apiKey" not in security:
        for item in paths.values():
            for operation in item.values():
                if isinstance(operation, dict) and "security" in operation:
                    operation["security"] = [s for s in operation["security"] if "apiKey" not in s]
    return json.dumps(doc, separators=(",", ":")).encode()
