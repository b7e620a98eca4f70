"""API token login and logout (included under ``/api/``)."""

from django.urls import path

from annotator.core import token_views

urlpatterns = [
    path("auth/token/", token_views.TokenLoginView.as_view(), name="api-token"),
    path("auth/logout/", token_views.LogoutView.as_view(), name="api-logout"),
    path("auth/logoutall/", token_views.LogoutAllView.as_view(), name="api-logout-all"),
]
