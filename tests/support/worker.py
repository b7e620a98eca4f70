"""A real `celery worker` process for tests, on the test database, broker and files.

Runs against whatever DATABASE_URL and CELERY_BROKER_URL say: PostgreSQL and Redis in CI
(.ci/run), SQLite and the filesystem broker on a bare machine.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from annotator.celery import QUEUES, app

REPO = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the test database this process uses, for the worker process."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    host = f"{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
    return f"postgres://{db['USER']}{password}@{host}/{db['NAME']}"


def broker_is_redis() -> bool:
    return str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://"))


def purge_queues() -> None:
    """Drop messages a previous run may have left (and, on Redis, its unacknowledged ones)."""
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
        if broker_is_redis():
            client = conn.default_channel.client  # type: ignore[attr-defined]
            client.delete("unacked", "unacked_index", "unacked_mutex")


class Worker:
    """One worker process; ``log`` is its combined output."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while b"ready." not in self.log.read_bytes():
            assert self.process.poll() is None, "worker exited:\n" + self.output()
            assert time.monotonic() < deadline, "worker did not start:\n" + self.output()
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the main process: no shutdown, no ack, no requeue from it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def kill_all(self) -> None:
        """SIGKILL the whole worker at once, main and pool processes (its own process group),
        as the OOM killer of a container or a lost machine would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_all()


@contextmanager
def running_worker(
    *,
    media_root: Path,
    log: Path,
    queues: Sequence[str] = QUEUES,
    pool: str = "prefork",
    env: Mapping[str, str] | None = None,
    purge: bool = True,
    beat_schedule: Path | None = None,
) -> Iterator[Worker]:
    """Start a worker (concurrency 1, prefetch 1) and stop it when the block ends; in a
    process group of its own (``Worker.kill_all``). ``beat_schedule``: embed celery beat, with
    this schedule file.

    Tasks are sent for real while it runs (``task_always_eager`` off in this process).
    """
    app.conf.task_always_eager = False
    if purge:
        purge_queues()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ANNOTATOR_MEDIA_ROOT": str(media_root),
        "ANNOTATOR_DATA_DIR": str(settings.DATA_DIR),
        **(env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "annotator", "worker", "-Q", ",".join(queues)]
    command += ["--pool", pool, "--concurrency", "1", "--prefetch-multiplier", "1"]
    command += ["--loglevel", "info", "--without-gossip", "--without-mingle"]
    if beat_schedule is not None:
        command += ["--beat", "--schedule", str(beat_schedule)]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process, log)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER
