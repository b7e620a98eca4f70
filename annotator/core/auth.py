"""Signing in: the API's token authentication (django-rest-knox) and the lockout after repeated
failed logins (django-axes). The token endpoints are in token_views.py.

Tokens are for scripts (the browser uses its session), sent as ``Authorization: Token <key>``
or ``Authorization: Bearer <key>`` (what DICOMweb clients such as 3D Slicer send) until they
expire (``REST_KNOX["TOKEN_TTL"]``) or are revoked. The database keeps only a SHA-512 digest of
each token. DICOMweb also takes HTTP Basic (a username and password on every request).

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
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import authentication, exceptions, status
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

TOKEN_URL = "/api/auth/token/"
KEYWORDS = (b"token", b"bearer")  # Authorization: Token <key> / Bearer <key> (RFC 6750)


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
        auth = authentication.get_authorization_header(request).split()
        if not auth or auth[0].lower() not in KEYWORDS:
            return None  # no credentials, or credentials for another class
        if len(auth) != 2:
            raise TokenRefused("Invalid token header: expected '<Token|Bearer> <token>'.")
        return self.authenticate_credentials(auth[1])

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


class DicomWebTokenAuthentication(TokenAuthentication):
    """The token check of DICOMweb, which comes first there: a request with no credentials is
    401 with ``WWW-Authenticate: Bearer realm="dicomweb"`` (PS3.18 and its clients expect a
    challenge, not 403). Basic is accepted too but not offered in the challenge, so a browser
    never pops up its password dialog, nor keeps a password it would send cross-site."""

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="dicomweb"'


class BasicRefused(TokenRefused):
    """A username and password that were sent and refused: 401."""

    auth_header = 'Basic realm="dicomweb"'


class BasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic for DICOMweb clients, through Django's ``authenticate``: django-axes counts
    each failure and refuses a locked-out username and address (429 with Retry-After), like
    every other login path. Each request checks the password (a token is far cheaper)."""

    def authenticate_credentials(
        self, userid: str, password: str, request: Request | None = None
    ) -> tuple[Any, None]:
        credentials = {"username": userid, "password": password}
        user = authenticate(request=request, **credentials)
        if request is not None and getattr(request, "axes_locked_out", False):
            cooloff = settings.AXES_COOLOFF_TIME
            wait = int(cooloff.total_seconds()) if isinstance(cooloff, timedelta) else None
            raise exceptions.Throttled(
                wait, "Too many failed logins for this username from your address."
            )
        if user is None or not user.is_active:
            raise BasicRefused("Invalid username/password.")
        return user, None


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI schema's name for this authentication (drf-spectacular)."""

    target_class = "annotator.core.auth.TokenAuthentication"
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
