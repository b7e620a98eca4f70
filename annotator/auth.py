"""Signing in: the API's token authentication (django-rest-knox) and the lockout after repeated
failed logins (django-axes). The token endpoints are in token_views.py.

Tokens are for scripts (the browser uses its session), sent as ``Authorization: Token <key>``
until they expire (``REST_KNOX["TOKEN_TTL"]``) or are revoked. The database keeps only a
SHA-512 digest of each token.

Failed logins are counted per username and client address on every login path (the token
endpoint, the login form, the admin's) by django-axes through Django's ``authenticate``; past
``AXES_FAILURE_LIMIT`` that pair is refused, even with the right password, until
``AXES_COOLOFF_TIME`` has passed with no further failure. :func:`lockout_response` is what the
refused client sees.
"""

from datetime import timedelta
from hmac import compare_digest
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

TOKEN_URL = "/api/auth/token/"


class TokenRefused(exceptions.APIException):
    """A token that was sent and refused: 401 with ``WWW-Authenticate: Token``.

    Not an ``AuthenticationFailed``: DRF turns those into 403 when session authentication comes
    first (as here, so a request with no credentials at all stays 403 as before).
    """

    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "authentication_failed"
    auth_header = "Token"


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox's token check, with a refusal that says why (expired, revoked or unknown, inactive
    user) and no 500 on a header that is not UTF-8.

    An expired token is kept (and keeps answering "expired") until the next login removes
    every expired token; knox's own class deletes it at first sight and also reads all of the
    user's tokens on every request.
    """

    def authenticate(self, request: Request) -> tuple[Any, AuthToken] | None:
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed as exc:  # a malformed header
            raise TokenRefused(exc.detail) from None

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        try:
            key = token.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenRefused("Invalid token.") from None
        candidates = AuthToken.objects.filter(token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH])
        for auth_token in candidates.select_related("user"):
            if not compare_digest(hash_token(key), auth_token.digest):
                continue
            if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
                raise TokenRefused(
                    f"Token expired at {auth_token.expiry.isoformat(timespec='seconds')}: "
                    f"request a new one (POST {TOKEN_URL})."
                )
            if not auth_token.user.is_active:
                raise TokenRefused("User inactive or deleted.")
            return auth_token.user, auth_token
        raise TokenRefused("Invalid token.")


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI schema's name for this authentication (drf-spectacular)."""

    target_class = "annotator.auth.TokenAuthentication"
    name = "tokenAuth"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as the API's throttles see it (REMOTE_ADDR, or the address that
    the ``NUM_PROXIES`` trusted proxies put in X-Forwarded-For), for axes too."""
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """429 for a locked-out username and address: JSON under /api/, a page elsewhere."""
    cooloff = settings.AXES_COOLOFF_TIME
    seconds = int(cooloff.total_seconds()) if isinstance(cooloff, timedelta) else None
    wait = _duration(seconds) if seconds else "until an administrator unlocks it"
    username = (credentials or {}).get("username") or ""
    headers = {"Retry-After": str(seconds)} if seconds else {}
    if request.path.startswith("/api/"):
        detail = (
            f"Too many failed logins for this username from your address: try again in {wait}."
            if seconds
            else f"Too many failed logins for this username from your address: locked {wait}."
        )
        body = {"detail": detail, "retry_after": seconds}
        return JsonResponse(body, status=status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)
    context = {
        "username": username,
        "wait": wait,
        "cooloff": bool(seconds),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
    }
    response = render(request, "registration/locked_out.html", context, status=429)
    for name, value in headers.items():
        response[name] = value
    return response


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    minutes = round(seconds / 60)
    return f"{minutes} minutes" if minutes < 120 else f"{round(minutes / 60)} hours"
