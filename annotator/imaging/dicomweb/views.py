"""What every DICOMweb view shares: DRF authentication, project scoping, DICOM JSON responses.

The views are DRF ``APIView``s with the API's ``IsAuthenticated`` permission; a client signs in
with a token (``Authorization: Bearer <key>`` or ``Token <key>``), HTTP Basic, or the browser's
session. No credentials: 401 with ``WWW-Authenticate: Bearer realm="dicomweb"``.

Every lookup is scoped to the projects the user is a member of (the projects
``projects.access.visible_projects`` gives): a study of a project the user is not a member of is
not listed by QIDO-RS and is 404 for WADO-RS, exactly like the API's objects. A study imported
into two of the user's projects is one study here: each study, series and instance is served
once per UID (the copy with the lowest primary key), never once per project.

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
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Min, Model, QuerySet
from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from annotator.core.auth import BasicAuthentication, DicomWebTokenAuthentication
from annotator.core.rest import current_user
from annotator.models import Instance, Series, Study

DICOM_JSON = "application/dicom+json"
M = TypeVar("M", bound=Model)


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
    # A token first: no credentials is 401 with a challenge (DRF asks the first class for it).
    # The session keeps DRF's CSRF check on unsafe methods.
    authentication_classes = [
        DicomWebTokenAuthentication,
        BasicAuthentication,
        SessionAuthentication,
    ]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AcceptAnything
    # the API's per-user throttle, with a budget of its own (annotator/core/throttling.py)
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


def first_per_uid(queryset: QuerySet[M], *uid_fields: str) -> QuerySet[M]:
    """One row of ``queryset`` per value of ``uid_fields`` (the one with the lowest pk): a study
    in two of the user's projects is two rows with one UID, and is served once."""
    firsts = queryset.order_by().values(*uid_fields).annotate(first=Min("pk")).values("first")
    return queryset.model._default_manager.filter(pk__in=firsts)


def studies_or_404(user: User, study: str) -> QuerySet[Study]:
    """Every visible copy of the study (a series of any of them belongs to it)."""
    studies = visible_studies(user).filter(study_instance_uid=study)
    if not studies.exists():
        raise Http404("no such study")
    return studies


def series_or_404(user: User, study: str, series: str) -> QuerySet[Series]:
    """One visible copy of the series (the first), as a queryset."""
    first = (
        visible_series(user)
        .filter(study__study_instance_uid=study, series_instance_uid=series)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if first is None:
        raise Http404("no such series")
    return Series.objects.filter(pk=first)


def instance_or_404(user: User, study: str, series: str, instance: str) -> Instance:
    found = (
        visible_instances(user)
        .filter(
            series__study__study_instance_uid=study,
            series__series_instance_uid=series,
            sop_instance_uid=instance,
        )
        .select_related("series", "series__study")
        .order_by("pk")
        .first()
    )
    if found is None:
        raise Http404("no such instance")
    return found


def root_url(request: Request) -> str:
    """The absolute URL of ``/dicomweb`` (no trailing slash): under ``PUBLIC_BASE_URL`` when it
    is set, else as the client reached it (its Host header, which some clients send without the
    port: their next request, to a link built from it, would go to port 80)."""
    path = reverse("dicomweb-studies").rsplit("/studies", 1)[0]
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL.rstrip("/") + path
    return request.build_absolute_uri(path)


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
