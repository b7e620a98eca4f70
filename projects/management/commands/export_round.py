from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotator.core.errors import InvalidInput
from projects.exports import FORMATS, export_round_files, parse_formats
from projects.models import Round


class Command(BaseCommand):
    help = (
        "Export a round's accepted cases (NIfTI, MedSAM2 npz, nnU-Net v2 raw, DICOM SEG) "
        "with a manifest."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("project", help="project slug")
        parser.add_argument("round", type=int, help="round number")
        parser.add_argument("--out", required=True, type=Path, help="output folder")
        parser.add_argument(
            "--format",
            default=",".join(FORMATS),
            help=f"comma-separated formats among {', '.join(FORMATS)} (default: all)",
        )

    def handle(
        self, *args: Any, project: str, round: int, out: Path, format: str, **options: Any
    ) -> None:
        try:
            formats = parse_formats(format)
        except InvalidInput as exc:
            raise CommandError(exc.message) from exc
        round_ = Round.objects.filter(project__slug=project, number=round).first()
        if round_ is None:
            raise CommandError(f"project {project!r} has no round {round}")
        manifest = export_round_files(round_, out.resolve(), formats=formats)
        for case in manifest["cases"]:
            self.stdout.write(f"{case['case']}: {len(case['lesions'])} lesion(s), {case['split']}")
        for skip in manifest["skipped"]:
            self.stdout.write(f"{skip['case']}: no {skip['format']}: {skip['reason']}")
        self.stdout.write(
            f"exported {len(manifest['cases'])} accepted case(s) as {', '.join(formats)} to {out}"
        )
