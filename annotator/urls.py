from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from annotator.frontend import app_page

# ReDoc's page (per view, on top of settings.CONTENT_SECURITY_POLICY): its styled-components
# inject <style> elements that carry no nonce, and its sidebar shows Redocly's logo from their CDN.
REDOC_POLICY = {
    "style-src": [SELF, UNSAFE_INLINE],
    "img-src": [SELF, "data:", "https://cdn.redoc.ly"],
}

api: list[URLPattern | URLResolver] = [
    path("", include("annotator.core.urls")),
    path("", include("projects.urls")),
    path("", include("annotator.annotation.urls")),
    path("", include("inference.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "redoc/",
        csp_replace(REDOC_POLICY)(SpectacularRedocView.as_view(url_name="schema")),
        name="redoc",
    ),
]

urlpatterns = [
    path("api/", include(api)),
    path("dicomweb/", include("projects.intake.urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", app_page, name="app"),
]
