"""The views keysentry's Django tests call: plain Django (sync and async) and DRF."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keysentry.django.drf import HasAPIKey, HasScopes


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "api_key": getattr(request, "api_key", "unset")})


def plain(request: HttpRequest) -> JsonResponse:
    key = request.api_key  # type: ignore[attr-defined]
    return JsonResponse({"id": key.id, "owner": key.owner, "scopes": sorted(key.scopes)})


async def async_plain(request: HttpRequest) -> JsonResponse:
    key = request.api_key  # type: ignore[attr-defined]
    return JsonResponse({"id": key.id, "async": True})


class Me(APIView):
    permission_classes = [HasAPIKey]

    def get(self, request: Request) -> Response:
        return Response(
            {"id": request.auth.id, "owner": request.auth.owner, "user": str(request.user)}
        )


class Items(APIView):
    permission_classes = [HasScopes("read")]

    def get(self, request: Request) -> Response:
        return Response({"items": [], "by": request.auth.id})


class Write(APIView):
    permission_classes = [HasAPIKey & HasScopes("write")]

    def post(self, request: Request) -> Response:
        return Response({"written": True}, status=201)
