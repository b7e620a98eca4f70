"""What every API view shares: error mapping and object lookup scoped by membership."""

from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotator.core.errors import DomainError

M = TypeVar("M", bound=Model)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Domain errors become 400/403/409 with ``detail`` and field messages, never a 500."""
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"detail": exc.message}
        body.update(exc.fields)
        return Response(body, status=exc.status)
    django_limits = RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent
    if isinstance(exc, django_limits) and not isinstance(exc, exceptions.APIException):
        # Django's own limits on a form (DATA_UPLOAD_MAX_*): bad input, said as the API says it
        # (the upload limit's refusal is one too, with its own body: annotator.core.uploads).
        return Response({"detail": str(exc)}, status=400)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
    return drf_exception_handler(exc, context)


def get_visible(queryset: QuerySet[M], **lookup: Any) -> M:
    """The object from a membership-scoped queryset, or 404: foreign objects do not exist."""
    obj = queryset.filter(**lookup).first()
    if obj is None:
        raise Http404("not found")
    return obj


def current_user(request: Request) -> User:
    """The signed-in user (every API view requires authentication)."""
    user = request.user
    assert isinstance(user, User), "API views require an authenticated user"
    return user


def query_params(
    request: Request, serializer_class: type[serializers.Serializer]
) -> dict[str, Any]:
    """The request's query parameters as ``serializer_class`` reads them; 400 naming each
    parameter it refuses (a bad number is never handed to the database)."""
    params = serializer_class(data=request.query_params)
    params.is_valid(raise_exception=True)
    return dict(params.validated_data)
