"""Run the whole product on one machine: the web server (gunicorn) and a Celery worker."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.celery import QUEUES
from annotator.core.uploads import open_file_limit_raise

# The start-up lines the banner waits for: gunicorn's and Celery's own wording.
WEB_LISTENING = re.compile(rb"\] Listening at: ")
WEB_WORKER_BOOTED = re.compile(rb"\] Booting worker with pid: ")
WORKER_READY = re.compile(rb"celery@\S+ ready\.")
# After those, the banner waits for this much silence (the last start-up lines) ...
QUIET_S = 0.5
# ... and comes anyway after this long (a wording that changed should not hide the URL).
BANNER_WAIT_S = 120.0


class Relay:
    """Copies the children's output to ours line by line, noting their start-up lines, so the
    banner can come after them, where it is seen, rather than in the middle of them."""

    def __init__(self, *, web_workers: int) -> None:
        self.web_workers = web_workers
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.listening = False
        self.booted = 0
        self.worker_ready = False
        self.last_line = time.monotonic()

    def follow(self, stream: IO[bytes] | None, out: IO[bytes]) -> None:
        assert stream is not None
        thread = threading.Thread(target=self._copy, args=(stream, out), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _copy(self, stream: IO[bytes], out: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            with self.lock:
                self.last_line = time.monotonic()
                self.listening = self.listening or bool(WEB_LISTENING.search(line))
                self.booted += bool(WEB_WORKER_BOOTED.search(line))
                self.worker_ready = self.worker_ready or bool(WORKER_READY.search(line))
                try:
                    out.write(line)
                    out.flush()
                except OSError:
                    pass  # our output is gone (a closed pipe): keep draining theirs
        stream.close()

    def started(self) -> bool:
        """Both have said they are up and nothing has been printed for a moment."""
        with self.lock:
            return (
                self.listening
                and self.booted >= self.web_workers
                and self.worker_ready
                and time.monotonic() - self.last_line >= QUIET_S
            )

    def wait_started(self, processes: list[subprocess.Popen[bytes]]) -> bool:
        """Waits for the start-up lines (at most BANNER_WAIT_S); False when one of the processes
        stopped meanwhile (no banner for a server that is not running)."""
        deadline = time.monotonic() + BANNER_WAIT_S
        while all(process.poll() is None for process in processes):
            if self.started() or time.monotonic() > deadline:
                return True
            time.sleep(0.1)
        return False

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)


class Command(BaseCommand):
    help = "Start gunicorn and one Celery worker on every queue; stop both when either stops."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--logins", default="", help="text printed after the URL")

    def handle(self, *args: Any, host: str, port: int, web_workers: int, **options: Any) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"]}
        # Their output comes through pipes (Relay): unbuffered, each line arrives as it is written.
        env["PYTHONUNBUFFERED"] = "1"
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
        pipe = subprocess.PIPE
        worker = subprocess.Popen(worker_command, env=env, stdout=pipe, stderr=pipe)
        web = subprocess.Popen(web_command, env=env, stdout=pipe, stderr=pipe)
        processes = [web, worker]
        relay = Relay(web_workers=web_workers)
        for process in processes:
            relay.follow(process.stdout, sys.stdout.buffer)
            relay.follow(process.stderr, sys.stderr.buffer)

        def stop(*_: Any) -> None:
            for process in processes:
                if process.poll() is None:
                    process.terminate()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if relay.wait_started(processes):
            database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
            broker = settings.CELERY_BROKER_URL.split("@")[-1]
            with relay.lock:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"\n  Lesion Annotator is running at http://{host}:{port}/\n"
                    )
                    + f"  API docs: http://{host}:{port}/api/docs/   database: {database}"
                    f"   broker: {broker}\n"
                    + (options["logins"] and f"  {options['logins']}\n")
                    + "  Stop with Ctrl-C.\n"
                )
                self.stdout.flush()
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        stop()
        for process in processes:
            process.wait(timeout=30)
        relay.join()
        failed = [p for p in processes if p.returncode not in (0, -signal.SIGTERM)]
        if failed:
            sys.exit(1)
