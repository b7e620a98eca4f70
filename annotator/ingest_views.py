"""The DICOM import endpoint: many files and/or zip archives in one multipart request."""

import tempfile
from pathlib import Path

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api import current_user, get_visible
from annotator.errors import InvalidInput
from annotator.ingest import studies_import
from projects.access import require_role, visible_projects
from projects.models import Role

CHUNK = 1024 * 1024


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
        code: int
        if report.imported_series:
            code = status.HTTP_201_CREATED
        elif report.series and not report.rejected_files:
            code = status.HTTP_200_OK  # a repeated upload: everything is already there
        else:
            code = status.HTTP_400_BAD_REQUEST
        return Response(report.to_dict(), status=code)
