"""A protected DRF view (any valid key) and a plain Django view (the middleware's identity)."""

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keysentry.django.drf import HasAPIKey


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})  # exempt: no key needed


def hello(request: HttpRequest) -> JsonResponse:
    key = request.api_key  # the KeyIdentity: id, name, prefix, owner, scopes, metadata
    return JsonResponse({"hello": key.owner or key.name})


class Me(APIView):
    permission_classes = [HasAPIKey]  # or [HasScopes("read")]: keys holding "read"

    def get(self, request: Request) -> Response:
        key = request.auth  # the same KeyIdentity
        return Response({"id": key.id, "name": key.name, "owner": key.owner})
