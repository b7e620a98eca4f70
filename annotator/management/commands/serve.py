"""Run the whole product on one machine: the web server (gunicorn) and a Celery worker."""

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.celery import QUEUES
from annotator.uploads import open_file_limit_raise


class Command(BaseCommand):
    help = "Start gunicorn and one Celery worker on every queue; stop both when either stops."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--logins", default="", help="text printed after the URL")

    def handle(self, *args: Any, host: str, port: int, web_workers: int, **options: Any) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"]}
        python = sys.executable
        worker_command = [python, "-m", "celery", "-A", "annotator", "worker"]
        worker_command += ["-Q", ",".join(QUEUES), "--concurrency", "1"]
        worker_command += ["--prefetch-multiplier", "1", "--loglevel", "info"]
        # Embedded beat: the periodic sweep (jobs whose worker is gone, orphaned mask files).
        worker_command += ["--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
        web_command = [python, "-m", "gunicorn", "annotator.wsgi", "--bind", f"{host}:{port}"]
        web_command += ["--workers", str(web_workers), "--threads", "4", "--timeout", "300"]
        # No control socket: gunicorn's default is one fixed path per user, so a second instance
        # on the machine would take over the first's (and nothing here uses gunicornc).
        web_command += ["--access-logfile", "-", "--no-control-socket"]
        # Keep an idle connection 30 s (gunicorn's default is 2): a client that pauses between
        # requests (a viewer polling a job, a script) otherwise often reuses a connection just as
        # the server closes it, and sees a reset.
        web_command += ["--keep-alive", "30"]
        # Both inherit it: an import brings thousands of files (gunicorn's workers also raise
        # their own, in annotator.wsgi, when started some other way).
        open_file_limit_raise()
        worker = subprocess.Popen(worker_command, env=env)
        web = subprocess.Popen(web_command, env=env)
        processes = [web, worker]

        def stop(*_: Any) -> None:
            for process in processes:
                if process.poll() is None:
                    process.terminate()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        time.sleep(2)
        broker = settings.CELERY_BROKER_URL.split("@")[-1]
        self.stdout.write(
            self.style.SUCCESS(f"\n  Lesion Annotator is running at http://{host}:{port}/\n")
            + f"  API docs: http://{host}:{port}/api/docs/   database: "
            f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}   broker: {broker}\n"
            + (options["logins"] and f"  {options['logins']}\n")
            + "  Stop with Ctrl-C.\n"
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        stop()
        for process in processes:
            process.wait(timeout=30)
        failed = [p for p in processes if p.returncode not in (0, -signal.SIGTERM)]
        if failed:
            sys.exit(1)
