"""The API's token endpoints (django-rest-knox's login view, see auth.py).

``POST /api/auth/token/`` with a username and password (form or JSON) returns ``{"token",
"expiry"}``; ``POST /api/auth/logout/`` revokes the token the request was made with and
``/api/auth/logoutall/`` every token of the user.
"""

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_out
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from knox import views as knox_views
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.core.auth import lockout_response


class Credentials(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


TOKEN_RESPONSE = inline_serializer(
    "TokenResponse",
    {"token": serializers.CharField(), "expiry": serializers.DateTimeField(allow_null=True)},
)


class TokenLoginView(knox_views.LoginView):
    """``POST /api/auth/token/``: a new token for a username and password (form or JSON)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        auth=[],
        request=Credentials,
        responses={200: TOKEN_RESPONSE},
        description=(
            "A new API token for a username and password. Send it as `Authorization: Token "
            "<token>` until `expiry`. Repeated failures lock the username out from the client's "
            "address for a while (429)."
        ),
    )
    def post(self, request: Request, format: str | None = None) -> HttpResponse:
        credentials = Credentials(data=request.data)
        credentials.is_valid(raise_exception=True)
        user = authenticate(request=request, **credentials.validated_data)
        if getattr(request, "axes_locked_out", False):
            return lockout_response(request, None, credentials.validated_data)
        if user is None:
            raise exceptions.ValidationError(
                {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        # knox's view issues the token for request.user (and sends user_logged_in, which
        # clears this user's failure count); expired tokens of everyone go first.
        AuthToken.objects.filter(expiry__lte=timezone.now()).delete()
        request.user = user
        return super().post(request, format)


class LogoutView(APIView):
    """``POST /api/auth/logout/``: revokes the token the request was made with (a request
    signed in by its session carries none: nothing is revoked)."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, AuthToken):
            request.auth.delete()
        user_logged_out.send(sender=type(request.user), request=request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """``POST /api/auth/logoutall/``: revokes every token of the user, from a script or from
    the browser's session (a token that may have leaked)."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        AuthToken.objects.filter(user=request.user).delete()
        user_logged_out.send(sender=type(request.user), request=request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
