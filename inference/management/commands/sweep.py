"""Re-queue (or fail) the jobs whose worker is gone and remove mask files that no version names:
what ``celery beat`` runs every SWEEP_INTERVAL_S, for operators and cron."""

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.recovery import sweep


class Command(BaseCommand):
    help = (
        "Re-queue the jobs whose worker stopped answering (failed after their last attempt) and "
        "remove mask files whose version never committed; prints what it did as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="keep sweeping at this interval until interrupted (instead of once)",
        )

    def handle(self, *args: Any, every: float | None, **options: Any) -> None:
        if every is not None and not every > 0:
            raise CommandError(f"--every must be a positive number of seconds, not {every}")
        while True:
            self.stdout.write(json.dumps(sweep()))
            if not every:
                return
            time.sleep(every)
