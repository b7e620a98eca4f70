"""Download of a round's export as a zip (managers only); the manifest is ``RoundExportView``."""

import tempfile
from pathlib import Path
from typing import Any

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from annotator.core.rest import current_user, get_visible
from projects.access import require_role
from projects.exports import FORMATS, export_round_files, parse_formats, zip_folder
from projects.models import Role, Round
from projects.views import project_for


class ZipRenderer(BaseRenderer):
    """Lets clients ask for application/zip; an error body is still sent as JSON."""

    media_type = "application/zip"
    format = "zip"
    charset = None
    render_style = "binary"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        return JSONRenderer().render(data)


class RoundExportFilesView(APIView):
    renderer_classes = [JSONRenderer, ZipRenderer]

    @extend_schema(
        operation_id="api_projects_rounds_export_files",
        parameters=[
            OpenApiParameter(
                "formats",
                str,
                description=(
                    f"comma-separated, among {', '.join(FORMATS)} (default: all); "
                    "unknown names answer 400"
                ),
            )
        ],
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="manifest.json and the files of every accepted case, as a zip",
            )
        },
    )
    def get(self, request: Request, slug: str, number: int) -> FileResponse:
        """The round's accepted cases exported in the chosen formats, as one zip."""
        project = project_for(request, slug)
        require_role(current_user(request), project, Role.MANAGER)
        round_ = get_visible(Round.objects.filter(project=project), number=number)
        formats = parse_formats(request.query_params.get("formats") or ",".join(FORMATS))
        with tempfile.TemporaryDirectory(prefix="annotator-export-") as tmp:
            export_round_files(round_, Path(tmp) / "export", formats=formats)
            archive = Path(tmp) / "export.zip"
            zip_folder(Path(tmp) / "export", archive)
            # Open before the folder goes: the open file outlives its name.
            handle = open(archive, "rb")  # noqa: SIM115 - FileResponse closes it
        name = f"{project.slug}-round{round_.number}-export.zip"
        return FileResponse(handle, as_attachment=True, filename=name)
