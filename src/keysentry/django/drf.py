"""Django REST framework: the key as DRF's authentication, and permissions on it.

::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["keysentry.django.drf.APIKeyAuthentication"],
    }

    class Me(APIView):
        permission_classes = [HasAPIKey]              # any valid key
    class Items(APIView):
        permission_classes = [HasScopes("read")]      # a key holding "read"

Authentication stays in :class:`~keysentry.django.middleware.KeysentryMiddleware`, which
refuses bad keys (401), used-up credits (402), disabled keys and foreign addresses (403) and
rate-limited keys (429) before DRF runs. :class:`APIKeyAuthentication` hands DRF what the
middleware found: ``request.auth`` is the :class:`~keysentry.KeyIdentity`, ``request.user``
an :class:`APIKeyUser`. The permissions refuse with keysentry's own answers rather than DRF's
generic 403: 401 ``MISSING_API_KEY`` on a route no key authenticated (an exempt path), 403
``INSUFFICIENT_SCOPE`` with its ``WWW-Authenticate`` challenge for a missing scope (and the
credit the request spent given back). They compose with DRF's ``&``, ``|`` and ``~``.

OpenAPI: :class:`AutoSchema` and :class:`SchemaGenerator` declare the two schemes (``Bearer``
and the API-key header) with DRF's own schema generation; with drf-spectacular installed,
an extension declares them there.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.schemas import openapi

from .._scopes import Requirement
from ..core import CHARGED, Keysentry
from ..records import KeyIdentity
from ..responses import Rendered
from .conf import guard

__all__ = [
    "APIKeyAuthentication",
    "APIKeyUser",
    "AutoSchema",
    "HasAPIKey",
    "HasScopes",
    "Refused",
    "SchemaGenerator",
    "security_schemes",
]

BEARER_SCHEME = "keysentryBearer"
HEADER_SCHEME = "keysentryApiKey"


class APIKeyUser:
    """``request.user`` for a request a key authenticated: authenticated, never staff.

    ``pk`` and ``id`` are the key's id (what DRF's ``UserRateThrottle`` keys on); ``owner``
    and ``scopes`` are the key's, ``identity`` all of it."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, identity: KeyIdentity) -> None:
        self.identity = identity
        self.pk = self.id = identity.id
        self.owner = identity.owner
        self.scopes = identity.scopes
        self.username = identity.owner or identity.id

    def __repr__(self) -> str:
        return f"APIKeyUser({self.identity.prefix}...)"

    def __str__(self) -> str:
        return self.username

    def get_username(self) -> str:
        return self.username


def _identity(request: HttpRequest) -> KeyIdentity | None:
    try:
        identity = request.api_key  # type: ignore[attr-defined]
    except AttributeError:
        raise ImproperlyConfigured(
            "keysentry's DRF classes read what its middleware found: add "
            '"keysentry.django.middleware.KeysentryMiddleware" to MIDDLEWARE'
        ) from None
    return identity if isinstance(identity, KeyIdentity) else None


class APIKeyAuthentication(BaseAuthentication):
    """``request.auth``: the key's identity; ``request.user``: an :class:`APIKeyUser`.
    Returns None (DRF tries the next class) on a request no key authenticated."""

    def authenticate(self, request: Request) -> tuple[APIKeyUser, KeyIdentity] | None:
        identity = _identity(request._request)
        return None if identity is None else (APIKeyUser(identity), identity)

    def authenticate_header(self, request: Request) -> str:
        return f'Bearer realm="{guard().settings.realm}"'


class Refused(APIException):
    """A refusal rendered by keysentry (its status, body and challenge), raised through DRF's
    exception handling. ``detail`` is keysentry's JSON body as a dict."""

    def __init__(self, rendered: Rendered) -> None:
        super().__init__()
        self.status_code = rendered.status
        # Set after __init__, which would turn every value (false, numbers) into text.
        self.detail = json.loads(rendered.body)
        headers = dict(rendered.wsgi_headers)
        self.auth_header = headers.get("www-authenticate")
        self.rendered = rendered

    def __str__(self) -> str:
        return f"{self.status_code} {self.rendered.wsgi_status}"


class _KeyPermission(BasePermission):
    requirement = Requirement.of(())

    def has_permission(self, request: Request, view: Any) -> bool:
        identity = request.auth if isinstance(request.auth, KeyIdentity) else None
        if identity is None:
            identity = _identity(request._request)
        requirement = self.requirement
        denial = requirement.check(identity)
        if denial is None:
            return True
        ks = guard()
        if denial is requirement.insufficient:
            # A request refused for a scope spends no credit: give back what it took.
            account = request._request.META.pop(CHARGED, None)
            if account is not None:
                ks.refund(account)
        raise Refused(ks.render(denial))


class HasAPIKey(_KeyPermission):
    """Any valid key (checked by the middleware); 401 ``MISSING_API_KEY`` without one."""


def HasScopes(*scopes: str) -> type[BasePermission]:
    """A permission class for keys holding every one of ``scopes``:
    ``permission_classes = [HasScopes("read", "write")]``. A key lacking one gets 403
    ``INSUFFICIENT_SCOPE`` (``details.required``, ``WWW-Authenticate: Bearer ...,
    error="insufficient_scope", scope="..."``); no key, 401 ``MISSING_API_KEY``."""
    requirement = Requirement.of(scopes)
    name = f"HasScopes({', '.join(map(repr, requirement.scopes))})"
    return type(name, (_KeyPermission,), {"requirement": requirement, "__module__": __name__})


# -- OpenAPI -----------------------------------------------------------------------------------


def security_schemes(ks: Keysentry | None = None) -> dict[str, dict[str, str]]:
    """The OpenAPI security schemes of the guard's credentials: ``Authorization: Bearer``
    and, unless turned off, the API-key header."""
    settings = (ks or guard()).settings
    schemes = {BEARER_SCHEME: {"type": "http", "scheme": "bearer"}}
    if settings.header.lower() != "authorization":
        schemes[BEARER_SCHEME] = {"type": "apiKey", "in": "header", "name": settings.header}
    if settings.api_key_header is not None:
        schemes[HEADER_SCHEME] = {"type": "apiKey", "in": "header", "name": settings.api_key_header}
    return schemes


def _authenticated_by_key(view: Any) -> bool:
    classes = getattr(view, "authentication_classes", ())
    return any(isinstance(c, type) and issubclass(c, APIKeyAuthentication) for c in classes)


class AutoSchema(openapi.AutoSchema):
    """DRF's own ``AutoSchema``, with ``security`` on operations authenticated by a key:
    ``"DEFAULT_SCHEMA_CLASS": "keysentry.django.drf.AutoSchema"``."""

    def get_operation(self, path: str, method: str) -> dict[str, Any]:
        operation: dict[str, Any] = super().get_operation(path, method)
        if _authenticated_by_key(self.view):
            operation["security"] = [{name: []} for name in security_schemes()]
        return operation


class SchemaGenerator(openapi.SchemaGenerator):
    """DRF's ``SchemaGenerator`` with keysentry's security schemes among the components:
    ``get_schema_view(generator_class=SchemaGenerator)``, or ``manage.py generateschema
    --generator_class keysentry.django.drf.SchemaGenerator``."""

    def get_schema(self, request: Request | None = None, public: bool = False) -> Any:
        schema = super().get_schema(request, public)
        schema.setdefault("components", {})["securitySchemes"] = security_schemes()
        return schema


try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
except ImportError:  # drf-spectacular is optional
    pass
else:

    class KeysentryScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
        """drf-spectacular: the schemes of :class:`APIKeyAuthentication`, either one."""

        target_class = "keysentry.django.drf.APIKeyAuthentication"
        match_subclasses = True

        @property
        def name(self) -> list[str]:  # type: ignore[override]
            return list(security_schemes())

        def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
            return [{name: []} for name in security_schemes()]

        def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
            return list(security_schemes().values())
