"""Latency of "next task" through the HTTP API, with 1,000 and with 100,000 tasks waiting.

    python benchmarks/claim_latency.py [--database-url URL] [--clients 10] [--claims 200]

Recreates the PostgreSQL database at ``--database-url`` (default
postgres://postgres@127.0.0.1:5432/annotator_bench_claims), migrates it, fills a project with
1,000 open tasks (random priorities, bulk_create), serves the app with gunicorn as in production
and lets ``--clients`` concurrent clients (one thread each, a keep-alive connection) claim
tasks: each POSTs ``/api/projects/SLUG/tasks/next/`` (timed, after ``WARM_UP`` untimed claims
per client) as the next of a pool of annotators (token auth), so every request is a fresh claim
at the head of the queue, as when many annotators ask for work at once. By default each client
sends its next claim as soon as the last is answered (a closed loop: the machine's saturation);
``--rate R`` paces each client at R claims a second instead (Poisson arrivals, latency counted
from when a claim was due). With ``--submit`` each client is one annotator who submits every task
before claiming the next. ``--threads`` sets gunicorn's threads per worker (4 as in ``manage.py
serve``). That 1k project is measured alone first; then a second project with 100,000 tasks is
added and both are measured in alternating blocks (``--claims`` timed claims each), so that the
other jobs of a shared machine weigh on both sizes alike. Last, one client alone (the service
time, no queueing) and the claim query's plan. Ends with
``RESULT claim_latency p95_ms_1k=X p95_ms_100k=Y ratio=Z`` (ratio = p95 at 100k / p95 at 1k).
"""

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.servers import free_port, wait_for  # noqa: E402

SIZES = {"1k": 1_000, "100k": 100_000}
BATCH = 5_000
BLOCKS = 4
WARM_UP = 5  # untimed claims per client: connections, server threads and their prepared queries


def report(what: str, timings: list[float]) -> float:
    value = p95(timings)
    print(
        f"{what}: {len(timings)} claims, median {statistics.median(timings):6.1f} ms, "
        f"p95 {value:6.1f} ms, max {max(timings):6.1f} ms",
        flush=True,
    )
    return value


def recreate_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def fill(slug: str, n_tasks: int, n_annotators: int) -> list[str]:
    """A project with ``n_tasks`` open tasks and ``n_annotators`` annotators; their tokens."""
    from django.contrib.auth.models import User
    from django.db import transaction
    from knox.models import AuthToken

    from annotator.models import Series, Study
    from projects.models import Membership, Project, Role, Round, Task

    project = Project.objects.create(
        name=slug, slug=slug, modality="CT", lesion_classes=[{"name": "lesion", "color": "#f00"}]
    )
    round_ = Round.objects.create(project=project, number=0)
    study = Study.objects.create(project=project, study_instance_uid=f"2.25.{project.pk}")
    rng = random.Random(0)
    for start in range(0, n_tasks, BATCH):
        stop = min(start + BATCH, n_tasks)
        series = Series.objects.bulk_create(
            Series(
                study=study,
                series_instance_uid=f"2.25.{project.pk}.{i}",
                modality="CT",
                original_prefix="bench/",
            )
            for i in range(start, stop)
        )
        Task.objects.bulk_create(
            Task(round=round_, series=s, priority=rng.randint(0, 9)) for s in series
        )
    users = User.objects.bulk_create(User(username=f"{slug}-a{i}") for i in range(n_annotators))
    Membership.objects.bulk_create(
        Membership(user=u, project=project, role=Role.ANNOTATOR) for u in users
    )
    with transaction.atomic():  # knox hashes each token as it creates it: no bulk_create
        return [AuthToken.objects.create(user=u)[1] for u in users]


class Client:
    """One keep-alive HTTP connection, token auth: a script's (or a browser's) view of the API."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(self, path: str, token: str) -> tuple[int, Any]:
        self.connection.request("POST", path, headers={"Authorization": f"Token {token}"})
        response = self.connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else None


def measure(
    base: str, slug: str, tokens: list[str], clients: int, submit: bool, rate: float, claims: int
) -> list[float]:
    """Milliseconds of each timed claim, ``claims / clients`` per client after the warm-up.

    Without ``submit`` every claim is made by an annotator of ``tokens`` not used before (they
    are consumed); with it, client i is annotator ``tokens[i]`` and submits each task it gets.
    ``rate`` 0: each client sends its next request as soon as the last one is answered (a closed
    loop: the machine's saturation). ``rate`` r: each client sends at random (Poisson) times, r
    claims a second on average, and a claim's time counts from when it was due, so that a
    client held up by a slow answer does not hide the delay (no coordinated omission).
    """
    per_client = max(1, claims // clients) + WARM_UP
    if not submit:
        if len(tokens) < clients * per_client:
            raise RuntimeError("not enough annotators left: raise --annotators")
        pools = [[tokens.pop() for _ in range(per_client)] for _ in range(clients)]
    else:
        pools = [[tokens[i]] * per_client for i in range(clients)]
    timings: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(clients)
    lock = threading.Lock()

    def client(pool: list[str]) -> None:
        api = Client(base)
        mine: list[float] = []
        pace = random.Random(len(pool))
        try:
            barrier.wait()
            due = time.perf_counter()
            for i, token in enumerate(pool):
                if rate:
                    due += pace.expovariate(rate)
                    time.sleep(max(0.0, due - time.perf_counter()))
                started = due if rate else time.perf_counter()
                code, task = api.post(f"/api/projects/{slug}/tasks/next/", token)
                elapsed = (time.perf_counter() - started) * 1000
                if code != 200:
                    errors.append(f"next: {code} {task}")
                    return
                if i >= WARM_UP:
                    mine.append(elapsed)
                if submit:
                    code, body = api.post(f"/api/tasks/{task['id']}/submit/", token)
                    if code != 200:
                        errors.append(f"submit: {code} {body}")
                        return
        finally:
            with lock:
                timings.extend(mine)

    threads = [threading.Thread(target=client, args=(pool,)) for pool in pools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return timings


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/annotator_bench_claims"
    )
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--annotators", type=int, default=600, help="annotators per project (each claims once)"
    )
    parser.add_argument(
        "--rate", type=float, default=0, help="claims a second per client (0: closed loop)"
    )
    parser.add_argument(
        "--submit", action="store_true", help="each client is one annotator who submits its tasks"
    )
    args = parser.parse_args()

    recreate_database(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as tmp:
        env = {
            **os.environ,
            "ANNOTATOR_DATA_DIR": tmp,
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
            "DJANGO_DEBUG": "false",
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update(env)
        import django
        from django.core.management import call_command
        from django.db import connection

        django.setup()
        call_command("migrate", verbosity=0)

        port = free_port()
        gunicorn = [sys.executable, "-m", "gunicorn", "annotator.wsgi"]
        gunicorn += ["--bind", f"127.0.0.1:{port}", "--workers", str(args.web_workers)]
        gunicorn += ["--threads", str(args.threads), "--keep-alive", "30", "--log-level", "warning"]
        server = subprocess.Popen(gunicorn, env=env, cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        results: dict[str, float] = {}
        try:
            wait_for(f"{base}/accounts/login/", process=server, timeout=120, request_timeout=30)
            tokens: dict[str, list[str]] = {}
            load = (args.clients, args.submit, args.rate)
            for label, n_tasks in SIZES.items():
                started = time.perf_counter()
                tokens[label] = fill(f"bench-{label}", n_tasks, args.annotators)
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
                print(f"{n_tasks:>7} tasks filled in {time.perf_counter() - started:5.1f} s")
                if label == "1k":
                    report(
                        "1k alone (no other project yet)",
                        measure(base, "bench-1k", tokens[label], *load, args.claims // 2),
                    )
            # Interleaved blocks, so that the other jobs of a shared machine weigh on both sizes.
            timings: dict[str, list[float]] = {label: [] for label in SIZES}
            for _block in range(BLOCKS):
                for label in SIZES:
                    timings[label] += measure(
                        base, f"bench-{label}", tokens[label], *load, args.claims // BLOCKS
                    )
            for label, values in timings.items():
                results[label] = report(f"{label} ({args.clients} clients)", values)
            report(
                "100k, 1 client (service time)",
                measure(base, "bench-100k", tokens["100k"], 1, args.submit, 0, 50),
            )
            explain_claim("bench-100k")
        finally:
            server.terminate()
            server.wait(timeout=30)
    ratio = results["100k"] / results["1k"]
    print(
        f"RESULT claim_latency p95_ms_1k={results['1k']:.1f} "
        f"p95_ms_100k={results['100k']:.1f} ratio={ratio:.2f}"
    )


def explain_claim(slug: str) -> None:
    """Print the plan of the claim query: it should read the partial queue index, not sort."""
    from django.db import connection, transaction

    from projects.models import Project, Task

    project = Project.objects.get(slug=slug)
    round_ids = list(project.rounds.values_list("pk", flat=True))
    queue = (
        Task.objects.filter(round_id__in=round_ids, state=Task.State.UNASSIGNED)
        .order_by("-priority", "id")
        .select_for_update(skip_locked=True, of=("self",))
    )
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = queue[:1].query.sql_with_params()
        cursor.execute("EXPLAIN ANALYZE " + sql, params)
        plan: list[Any] = cursor.fetchall()
    print("claim query plan:\n  " + "\n  ".join(row[0] for row in plan))


if __name__ == "__main__":
    main()
