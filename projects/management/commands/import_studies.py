"""Import DICOM studies from files, folders and zip archives into a project."""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from projects.intake.ingest import studies_import
from projects.models import Project


class Command(BaseCommand):
    help = (
        "Import DICOM studies (files, folders searched recursively, zip archives) into a "
        "project: one series, volume and task per DICOM series. Prints a report: the counts, "
        "then one line per rejected file with its reason. Exit status: 0 when a series was "
        "imported or no file was rejected; 1 when files were rejected and nothing was imported "
        "(or the project does not exist)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
        parser.add_argument("--project", required=True, metavar="SLUG")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, paths: list[Path], project: str, **options: Any) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"no project with the slug {project!r}")
        bar: tqdm[Any] | None = None

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal bar
            if options["no_progress"]:
                return
            if bar is None or bar.desc != stage:
                if bar is not None:
                    bar.close()
                bar = tqdm(total=total, desc=stage, unit="item", file=sys.stderr)
            bar.n = done
            bar.refresh()

        report = studies_import(project=target, paths=paths, progress=progress)
        if bar is not None:
            bar.close()
        for name, count in report.counts().items():
            self.stdout.write(f"{name}: {count}")
        for series in report.series:
            line = f"series {series.series_instance_uid}: {series.status}"
            if series.status == "imported":
                line += f" ({series.slices} slices, size {series.size}, task {series.task_id})"
            elif series.reason:
                line += f": {series.reason}"
            self.stdout.write(line)
        rejected = report.rejected_files
        for outcome in rejected:
            self.stdout.write(f"rejected {outcome.source}: {outcome.reason}")
        if rejected and report.imported_series == 0:
            raise CommandError(
                f"{len(rejected)} file(s) rejected and nothing imported", returncode=1
            )
