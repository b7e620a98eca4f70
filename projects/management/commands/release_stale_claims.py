from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from projects.models import Project
from projects.task_services import tasks_release_stale


class Command(BaseCommand):
    help = (
        "Return to the pool the tasks claimed more than --older-than-hours ago with no mask saved "
        "since (pool projects only)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than-hours", type=float, required=True)
        parser.add_argument("--project", help="only this project (slug)")

    def handle(self, *args: Any, older_than_hours: float, **options: Any) -> None:
        if older_than_hours <= 0:
            raise CommandError("--older-than-hours must be positive")
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"no project {options['project']!r}")
        released = tasks_release_stale(
            older_than=timedelta(hours=older_than_hours), project=project
        )
        self.stdout.write(f"released {released} stale claim(s)")
