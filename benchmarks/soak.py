"""Soak: many people working at once on the whole product, started as ``make run`` starts it.

    python benchmarks/soak.py [--minutes 5 | --seconds S] [--clients 10]
                              [--database-url URL] [--broker-url URL] [--data-dir DIR]

Without ``--database-url`` / ``--broker-url`` this is ``make run``'s embedded default: SQLite in
the data directory and Celery's filesystem broker (DATABASE_URL and CELERY_BROKER_URL from the
environment are ignored). With them, the PostgreSQL database is dropped and created afresh and
the Redis queues are purged. Either way: migrate, create a project with ``--clients`` people
(one manager, about a third reviewers, the rest annotators; tests/support/soak.py) and
``3 x annotators`` phantom volumes, start ``manage.py serve`` (gunicorn with its 2 workers x 4
threads and a Celery worker, as ``make run`` does) and let every person act through the HTTP API
at once for the given time: claim, load, save masks (with stale parents and simultaneous saves
on one parent on purpose), ask the model, record effort, submit, review, reopen.

Afterwards the database is audited against what the clients saw (tests/support/soak.py
``audit_problems``): the audit trail equal to the successful changes, every mask history one
intact chain, task states matching their last event, each mask version's file present, and no
mask file without its version. The server's memory (RSS of gunicorn, its workers and the Celery
worker, summed) is sampled every 5 s; its growth is the mean of the last three samples over the
mean of the three samples that end the warm-up (the first fifth of the run, 20 s at least).

Ends with ``RESULT soak requests=N errors_5xx=E p95_ms=P rss_growth_pct=G consistent=0|1``.
"""

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import soak  # noqa: E402
from tests.support.servers import serving  # noqa: E402

SHAPE = (16, 64, 64)
WEB_WORKERS = 2  # manage.py serve's default


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
            total += member.memory_info().rss
    return total


class MemorySampler(threading.Thread):
    def __init__(self, pid: int, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopped.wait(self.every):
            self.samples.append((time.monotonic() - start, tree_rss(self.process)))

    def growth_pct(self, warm_up: float) -> float:
        warm = [rss for t, rss in self.samples if t <= warm_up][-3:]
        last = [rss for _, rss in self.samples][-3:]
        if not warm or not last:
            return 0.0
        return 100 * (statistics.mean(last) / statistics.mean(warm) - 1)


def recreate_postgres(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def environment(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="annotator.settings", ANNOTATOR_DATA_DIR=str(data_dir))
    env.pop("ANNOTATOR_MEDIA_ROOT", None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["CELERY_BROKER_URL"] = args.broker_url
    return env


def server_problems(log: Path) -> list[str]:
    """What the server's own output says went wrong: a web worker that was restarted (killed
    by a timeout, a crash or the OOM killer), an error logged with its traceback."""
    text = log.read_text(errors="replace")
    problems = [line for line in text.splitlines() if re.search(r"Traceback|WORKER TIMEOUT", line)]
    boots = len(re.findall(r"Booting worker with pid", text))
    if boots != WEB_WORKERS:
        problems.append(f"{boots} gunicorn workers booted for {WEB_WORKERS}: some were restarted")
    return problems


def orphan_files(media_root: Path) -> list[str]:
    """Mask files in local storage that no mask version names."""
    from annotator.models import MaskVersion

    folder = media_root / "projects" / soak.SLUG / "masks"
    on_disk = {p.relative_to(media_root).as_posix() for p in folder.rglob("*") if p.is_file()}
    named = set(MaskVersion.objects.values_list("storage_key", flat=True))
    return sorted(on_disk - named)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=5.0)
    length.add_argument("--seconds", type=float)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--database-url", default="", help="PostgreSQL (recreated); default SQLite")
    parser.add_argument("--broker-url", default="", help="Redis (purged); default filesystem")
    parser.add_argument("--data-dir", type=Path, help="default: a new temporary folder")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="soak-"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = environment(args, data_dir)
    if args.database_url:
        recreate_postgres(args.database_url)
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)

    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    from tests.support.worker import purge_queues

    purge_queues()
    annotators = sum(role == "annotator" for role in soak.team(args.clients).values())
    soak.populate(clients=args.clients, volumes=3 * annotators, shape=SHAPE)
    connections.close_all()
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = settings.CELERY_BROKER_URL.split("://")[0]
    print(f"soak: {args.clients} clients for {seconds:.0f} s on {database} + {broker}", flush=True)

    log = data_dir / "serve.log"
    with serving(env, log) as (base, server):
        sampler = MemorySampler(server.pid)
        sampler.start()
        tally = soak.run(base, clients=args.clients, seconds=seconds, shape=SHAPE)
        sampler.stopped.set()
    warm_up = max(20.0, seconds / 5)
    growth = sampler.growth_pct(warm_up)
    problems = soak.audit_problems(tally) + server_problems(log)
    from django.core.files.storage import FileSystemStorage, default_storage

    if isinstance(default_storage, FileSystemStorage):
        problems += [f"orphan mask file {key}" for key in orphan_files(settings.MEDIA_ROOT)]
    summary = soak.summary(tally)
    summary["rss_mb"] = " ".join(str(round(rss / 2**20)) for _, rss in sampler.samples)
    summary["problems"] = problems[:20]
    print(soak.dumps(summary))
    consistent = int(not problems and not tally.unexpected)
    print(
        f"RESULT soak requests={tally.requests} errors_5xx={tally.errors_5xx} "
        f"p95_ms={tally.p95_ms():.0f} rss_growth_pct={growth:.1f} consistent={consistent}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
