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

from annotator.core.errors import InvalidInput
from annotator.core.rest import current_user, get_visible, query_params
from annotator.core.uploads import descriptors_refused
from annotator.imaging.dicom import archive
from projects.access import require_role, visible_projects
from projects.intake.ingest import ImportReport, studies_import
from projects.intake.pacs import MAX_STUDIES_PAGE, PacsSource, pacs_find_studies, pacs_import
from projects.models import Role

CHUNK = 1024 * 1024
# The zip archives of one import request may hold at most this many times the upload limit,
# uncompressed in all (16 GiB with the default 2 GiB limit).
ARCHIVE_EXPANSION = 8


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
                with descriptors_refused("files"), open(local, "wb") as out, upload:
                    for chunk in upload.chunks(CHUNK):
                        total += len(chunk)
                        if total > settings.MAX_UPLOAD_BYTES:
                            raise InvalidInput(
                                "the upload is larger than the limit",
                                fields={"files": [f"at most {settings.MAX_UPLOAD_BYTES} bytes"]},
                            )
                        out.write(chunk)
                # Closed once copied (``with upload``): its temporary file is deleted now, not
                # at the end of the request, and no descriptor stays open per file.
                paths.append(local)
                names[local] = upload.name or f"file {index + 1}"
            # Checked on what the archives declare, before any is extracted; each one's
            # extraction counts its real bytes against the same cap.
            cap = ARCHIVE_EXPANSION * settings.MAX_UPLOAD_BYTES
            declared = sum(archive.declared_bytes(path) for path in paths)
            if declared > cap:
                raise InvalidInput(
                    f"the zip archives hold {declared} bytes uncompressed, more than "
                    f"{ARCHIVE_EXPANSION} times the upload limit ({cap} bytes)",
                    fields={"files": [f"archives of at most {cap} bytes uncompressed in all"]},
                )
            report = studies_import(
                project=project,
                paths=paths,
                display_names=names,
                zip_limits={"max_total_bytes": cap},
            )
        return report_response(report)


def report_response(report: ImportReport) -> Response:
    """201 when something was imported (series or lesions), 200 when everything already was,
    else 400 (nothing was created)."""
    code: int
    if report.imported_series or report.created_lesions:
        code = status.HTTP_201_CREATED
    elif (report.series or report.labels) and not report.rejected_files:
        code = status.HTTP_200_OK  # a repeated upload: everything is already there
    else:
        code = status.HTTP_400_BAD_REQUEST
    return Response(report.to_dict(), status=code)


class PacsQuerySerializer(serializers.Serializer):
    """QIDO-RS filters passed on to the PACS: DICOM values (a PN is at most 3 x 64 characters)."""

    PatientID = serializers.CharField(max_length=64, required=False, allow_blank=True)
    PatientName = serializers.CharField(max_length=200, required=False, allow_blank=True)
    StudyDate = serializers.RegexField(
        r"\A-?[0-9]{8}(?:-[0-9]{8})?-?\Z",
        required=False,
        allow_blank=True,
        error_messages={"invalid": "YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-"},
    )
    AccessionNumber = serializers.CharField(max_length=64, required=False, allow_blank=True)
    StudyInstanceUID = serializers.CharField(max_length=64, required=False, allow_blank=True)
    ModalitiesInStudy = serializers.CharField(max_length=64, required=False, allow_blank=True)
    # Paging, passed on to the PACS's QIDO-RS; the response's Link header names the next page.
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_STUDIES_PAGE, default=MAX_STUDIES_PAGE
    )
    offset = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)


UID = r"\A[0-9]+(?:\.[0-9]+)*\Z"
MAX_PULL = 100


class PacsImportSerializer(serializers.Serializer):
    study_uids = serializers.ListField(
        child=serializers.RegexField(
            UID, max_length=64, error_messages={"invalid": "a UID: digits and dots"}
        ),
        min_length=1,
        max_length=MAX_PULL,
    )


class PacsStudyListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(name, str, description="QIDO-RS filter (wildcards allowed)")
            for name in ("PatientID", "PatientName", "StudyDate", "AccessionNumber")
        ]
        + [
            OpenApiParameter("limit", int, description=f"studies per page (1-{MAX_STUDIES_PAGE})"),
            OpenApiParameter("offset", int, description="studies to skip"),
        ],
        responses=inline_serializer(
            "PacsStudy",
            {
                "study_instance_uid": serializers.CharField(),
                "patient_id": serializers.CharField(),
                "patient_name": serializers.CharField(),
                "study_date": serializers.CharField(help_text="DICOM DA (YYYYMMDD) or empty"),
                "description": serializers.CharField(),
                "accession_number": serializers.CharField(),
                "modalities": serializers.ListField(child=serializers.CharField()),
                "instances": serializers.IntegerField(allow_null=True),
            },
            many=True,
        ),
    )
    def get(self, request: Request, slug: str) -> Response:
        """Search the configured PACS for studies (managers), a page at a time.

        The body is the page's studies; when the PACS has more, the ``Link`` header gives the
        next page's URL (``rel="next"``, RFC 8288) and ``X-Next-Offset`` its offset.
        """
        project = get_visible(visible_projects(current_user(request)), slug=slug)
        require_role(current_user(request), project, Role.MANAGER)
        params = query_params(request, PacsQuerySerializer)
        limit, offset = params.pop("limit"), params.pop("offset")
        query = {k: v for k, v in params.items() if v}
        page = pacs_find_studies(
            source=PacsSource.configured(), query=query, limit=limit, offset=offset
        )
        response = Response(page.studies)
        if page.more:
            following = request.query_params.copy()
            following["limit"] = str(page.limit)
            following["offset"] = str(page.offset + page.limit)
            url = request.build_absolute_uri(f"{request.path}?{following.urlencode()}")
            response["Link"] = f'<{url}>; rel="next"'
            response["X-Next-Offset"] = str(page.offset + page.limit)
        return response


class PacsImportView(APIView):
    @extend_schema(
        request=PacsImportSerializer,
        responses={201: OpenApiResponse(description="the import report")},
    )
    def post(self, request: Request, slug: str) -> Response:
        """Pull studies by StudyInstanceUID from the configured PACS and import them."""
        project = get_visible(visible_projects(current_user(request)), slug=slug)
        require_role(current_user(request), project, Role.MANAGER)
        data = PacsImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        uids = data.validated_data["study_uids"]
        return report_response(pacs_import(project=project, study_uids=uids))
