"""What every DICOMweb view shares: DRF authentication, project scoping, DICOM JSON responses.

The views are DRF ``APIView``s, so the API's session and token authentication and its
``IsAuthenticated`` permission apply unchanged (anonymous requests: 401/403). Every lookup is
scoped to the projects the user is a member of (the projects ``projects.access.visible_projects``
gives): a study of a project the user is not a member of is not listed by QIDO-RS and is 404 for
WADO-RS, exactly like the API's objects.

URLs (under ``/dicomweb/``; UIDs are dotted digits):

- QIDO-RS: ``studies``, ``series``, ``instances``, ``studies/{study}/series``,
  ``studies/{study}/instances``, ``studies/{study}/series/{series}/instances``;
- WADO-RS: ``studies/{study}``, ``studies/{study}/series/{series}``,
  ``studies/{study}/series/{series}/instances/{instance}`` (multipart DICOM files),
  ``.../metadata`` at each of those three levels (DICOM JSON), and
  ``studies/{study}/series/{series}/instances/{instance}/frames/{n[,m...]}``.
"""

import json
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from annotator.api import current_user
from annotator.models import Instance, Series, Study

DICOM_JSON = "application/dicom+json"


class AcceptAnything(BaseContentNegotiation):
    """DICOMweb negotiates its own media types (``multipart``); errors are rendered as JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)


@extend_schema(exclude=True)
class DicomWebView(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AcceptAnything
    # the API's per-user throttle, with a budget of its own (annotator/throttling.py)
    throttle_scope = "dicomweb"

    def user(self) -> User:
        return current_user(self.request)


# The projects a user is a member of, as a plain join on the membership (a user has at most one
# membership per project, so no duplicates): the viewer fetches every frame through these, and
# compiling the annotations of visible_projects() cost more than the query itself.


def visible_studies(user: User) -> QuerySet[Study]:
    return Study.objects.filter(project__memberships__user_id=user.id)


def visible_series(user: User) -> QuerySet[Series]:
    return Series.objects.filter(study__project__memberships__user_id=user.id)


def visible_instances(user: User) -> QuerySet[Instance]:
    return Instance.objects.filter(series__study__project__memberships__user_id=user.id)


def studies_or_404(user: User, study: str) -> QuerySet[Study]:
    studies = visible_studies(user).filter(study_instance_uid=study)
    if not studies.exists():
        raise Http404("no such study")
    return studies


def series_or_404(user: User, study: str, series: str) -> QuerySet[Series]:
    found = visible_series(user).filter(study__study_instance_uid=study, series_instance_uid=series)
    if not found.exists():
        raise Http404("no such series")
    return found


def instance_or_404(user: User, study: str, series: str, instance: str) -> Instance:
    found = (
        visible_instances(user)
        .filter(
            series__study__study_instance_uid=study,
            series__series_instance_uid=series,
            sop_instance_uid=instance,
        )
        .select_related("series", "series__study")
        .first()
    )
    if found is None:
        raise Http404("no such instance")
    return found


def root_url(request: Request) -> str:
    """The absolute URL of ``/dicomweb`` (no trailing slash), as the client reached it."""
    return request.build_absolute_uri(reverse("dicomweb-studies")).rsplit("/studies", 1)[0]


def accepts_json(request: Request) -> bool:
    accept = request.headers.get("Accept", "") or "*/*"
    return any(
        token.split(";")[0].strip().lower()
        in (DICOM_JSON, "application/json", "*/*", "application/*")
        for token in accept.split(",")
    )


def json_response(body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = HttpResponse(content, content_type=DICOM_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
