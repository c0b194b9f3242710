"""API plumbing shared by every app: the error shape, pagination, health and token endpoints."""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth import authenticate
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error as django_server_error
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from workbench.pagination import Pagination as Pagination  # re-exported: the lists import it with paginated


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any path under /api/v1/ that names nothing: JSON like every other error, never an HTML page."""
    return JsonResponse({"error": f"No API endpoint at {request.path}.", "detail": {}}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500: JSON under /api/, the plain page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "The server failed on this request; it has been logged.", "detail": {}},
                            status=500)
    return django_server_error(request)


def error_response(message: str, detail: dict[str, Any] | None = None, *, status_code: int = 400) -> Response:
    return Response({"error": message, "detail": detail or {}}, status=status_code)


def refusal_response(exc: Exception) -> Response | None:
    """The answer to a service's refusal, or None for any other exception.

    A service refuses by raising an exception that says where it belongs, and the API views let it
    through to here: `http_status` (JobStateError's 409, a busy dataset's 409, a worker that did not
    answer: 503/504) is the status; `field` (JobInputError, DatasetInputError, NetworkInputError: the
    field, or None for the request as a whole) is a 400 naming it, with the `report` of a fine-tune
    that would copy nothing when there is one.
    """
    http_status = getattr(exc, "http_status", None)
    if isinstance(http_status, int):
        return error_response(str(exc), status_code=http_status)
    if not hasattr(exc, "field") or isinstance(exc, exceptions.APIException):
        return None
    report = getattr(exc, "report", None)
    field = getattr(exc, "field", None) or "non_field_errors"
    return error_response(str(exc), {field: [str(exc)], **({"report": report} if report else {})})


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as `{"error": "...", "detail": {...}}` with a 4xx status."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    refusal = refusal_response(exc)
    if refusal is not None:
        return refusal
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        detail = data if isinstance(data, dict) else {"non_field_errors": data}
        response.data = {"error": _first_message(detail), "detail": detail}
    else:
        message = data.get("detail", str(exc)) if isinstance(data, dict) else str(exc)
        response.data = {"error": str(message), "detail": {}}
    return response


def _first_message(detail: dict[str, Any]) -> str:
    for field, problems in detail.items():
        problem = problems[0] if isinstance(problems, list) and problems else problems
        prefix = "" if field in ("non_field_errors", "error") else f"{field}: "
        return f"{prefix}{problem}"
    return "Invalid input."


class RequestInput(serializers.Serializer):
    """The base of every POST and PATCH body: a field it does not declare is a 400 naming it, never
    ignored (`"epochz": 3` would otherwise train the default 10 epochs). For a multipart body its
    file fields are fields like any other; nothing else is let through."""

    refuses_unknown = True

    def to_internal_value(self, data: Any) -> Any:
        if self.refuses_unknown and isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self.unknown_field(name)] for name in unknown})
        return super().to_internal_value(data)

    def unknown_field(self, name: str) -> str:
        """What a field it does not have is told: the nearest known name, when one is close."""
        known = [key for key, field in self.fields.items() if not field.read_only]
        close = difflib.get_close_matches(name, known, n=1)
        return f"Unknown field; did you mean {close[0]}?" if close else f"Unknown field; the fields are: {', '.join(known) or 'none'}."


class NoInput(RequestInput):
    """The body of an action that takes no fields (abort, resume, clone): any field is unknown."""


def paginated(request: Request, items: QuerySet[Any] | Sequence[Any], serializer_class: type[serializers.Serializer],
              view: APIView) -> Response:
    """One page of `items`, serialized. DRF paginates only generic views; list APIViews call this.

    A view that sets `pagination_class` (as the lists do, so the schema shows the page) gets that
    class, any other the configured default.
    """
    paginator = (getattr(view, "pagination_class", None) or api_settings.DEFAULT_PAGINATION_CLASS)()
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class HealthApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(responses=inline_serializer("Health", {"status": serializers.CharField()}))
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class TokenRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle (by client IP here: the caller is anonymous), rate from the settings.

    SimpleRateThrottle binds its rates when DRF is imported; reading them at each request lets a
    changed REST_FRAMEWORK (a test's `settings`) take effect. Behind a proxy every client shares
    its IP unless REST_FRAMEWORK["NUM_PROXIES"] says to read X-Forwarded-For.
    """

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class TokenApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    # Every attempt counts, so that passwords cannot be guessed at line rate; a throttled one is a
    # 429 whose error (and Retry-After header) says when to try again.
    throttle_classes = [TokenRateThrottle]
    throttle_scope = "token"

    class InputSerializer(RequestInput):
        username = serializers.CharField()
        password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)

    @extend_schema(request=InputSerializer, responses=inline_serializer("TokenOut", {"token": serializers.CharField()}))
    def post(self, request: Request) -> Response:
        given = self.InputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        user = authenticate(request._request, **given.validated_data)
        if user is None:
            return error_response("Unable to log in with the given username and password.",
                                  status_code=status.HTTP_400_BAD_REQUEST)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
