"""The DICOM import endpoint: many files and/or zip archives in one multipart request."""

import tempfile
from pathlib import Path

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api import current_user, get_visible
from annotator.errors import InvalidInput
from annotator.ingest import ImportReport, studies_import
from annotator.pacs import PacsSource, pacs_find_studies, pacs_import
from projects.access import require_role, visible_projects
from projects.models import Role

CHUNK = 1024 * 1024
PACS_FILTERS = (
    "PatientID",
    "PatientName",
    "StudyDate",
    "AccessionNumber",
    "StudyInstanceUID",
    "ModalitiesInStudy",
)


class StudyImportView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "StudyImport", {"files": serializers.ListField(child=serializers.FileField())}
            )
        },
        responses={
            201: OpenApiResponse(description="the import report: something was imported"),
            200: OpenApiResponse(description="the import report: everything already imported"),
            400: OpenApiResponse(description="the import report: nothing could be imported"),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        """Import DICOM files and zip archives (field ``files``, repeated) as series and tasks.

        The body is the import report: every file's outcome and every series' summary.
        """
        project = get_visible(visible_projects(current_user(request)), slug=slug)
        require_role(current_user(request), project, Role.MANAGER)
        uploads = request.FILES.getlist("files")
        if not uploads:
            raise InvalidInput("no files were uploaded", fields={"files": ["required"]})
        with tempfile.TemporaryDirectory(prefix="annotator-upload-") as tmp:
            paths, names = [], {}
            total = 0
            for index, upload in enumerate(uploads):
                # Our own name on disk: the client's name is only shown in the report.
                local = Path(tmp) / f"{index:05d}.upload"
                with open(local, "wb") as out:
                    for chunk in upload.chunks(CHUNK):
                        total += len(chunk)
                        if total > settings.MAX_UPLOAD_BYTES:
                            raise InvalidInput(
                                "the upload is larger than the limit",
                                fields={"files": [f"at most {settings.MAX_UPLOAD_BYTES} bytes"]},
                            )
                        out.write(chunk)
                paths.append(local)
                names[local] = upload.name or f"file {index + 1}"
            report = studies_import(project=project, paths=paths, display_names=names)
        return report_response(report)


def report_response(report: ImportReport) -> Response:
    """201 when something was imported, 200 when everything already was, else 400."""
    code: int
    if report.imported_series:
        code = status.HTTP_201_CREATED
    elif report.series and not report.rejected_files:
        code = status.HTTP_200_OK  # a repeated upload: everything is already there
    else:
        code = status.HTTP_400_BAD_REQUEST
    return Response(report.to_dict(), status=code)


class PacsStudyListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(name, str, description="QIDO-RS filter (wildcards allowed)")
            for name in ("PatientID", "PatientName", "StudyDate", "AccessionNumber")
        ],
        responses=inline_serializer(
            "PacsStudy",
            {
                "study_instance_uid": serializers.CharField(),
                "patient_id": serializers.CharField(),
                "study_date": serializers.CharField(),
                "description": serializers.CharField(),
            },
            many=True,
        ),
    )
    def get(self, request: Request, slug: str) -> Response:
        """Search the configured PACS for studies (managers)."""
        project = get_visible(visible_projects(current_user(request)), slug=slug)
        require_role(current_user(request), project, Role.MANAGER)
        query = {k: str(request.query_params[k]) for k in PACS_FILTERS if k in request.query_params}
        return Response(pacs_find_studies(source=PacsSource.configured(), query=query))


class PacsImportView(APIView):
    @extend_schema(
        request=inline_serializer(
            "PacsImport", {"study_uids": serializers.ListField(child=serializers.CharField())}
        ),
        responses={201: OpenApiResponse(description="the import report")},
    )
    def post(self, request: Request, slug: str) -> Response:
        """Pull studies by StudyInstanceUID from the configured PACS and import them."""
        project = get_visible(visible_projects(current_user(request)), slug=slug)
        require_role(current_user(request), project, Role.MANAGER)
        uids = request.data.get("study_uids") if isinstance(request.data, dict) else None
        if not isinstance(uids, list) or not uids or not all(isinstance(u, str) for u in uids):
            raise InvalidInput(
                "give the studies to pull", fields={"study_uids": ["a list of UIDs"]}
            )
        return report_response(pacs_import(project=project, study_uids=uids))
