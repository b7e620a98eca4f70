from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from projects.exports import export_round_files
from projects.models import Round


class Command(BaseCommand):
    help = "Export a round's accepted cases as NIfTI images, label maps and a manifest."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("project", help="project slug")
        parser.add_argument("round", type=int, help="round number")
        parser.add_argument("--out", required=True, type=Path, help="output folder")

    def handle(self, *args: Any, project: str, round: int, out: Path, **options: Any) -> None:
        round_ = Round.objects.filter(project__slug=project, number=round).first()
        if round_ is None:
            raise CommandError(f"project {project!r} has no round {round}")
        manifest = export_round_files(round_, out.resolve())
        for case in manifest["cases"]:
            self.stdout.write(f"{case['case']}: {len(case['lesions'])} lesion(s)")
        self.stdout.write(f"exported {len(manifest['cases'])} accepted case(s) to {out}")
