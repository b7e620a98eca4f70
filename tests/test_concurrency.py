"""Many people at once on the whole product as `make run` starts it, and on PostgreSQL + Redis.

Each test runs ``benchmarks/soak.py`` for 60 s with 10 clients (claims, loads, mask saves with
stale parents and simultaneous saves on one parent, model jobs, submits, reviews, reopenings;
tests/support/soak.py) against ``manage.py serve`` (gunicorn and a Celery worker), then reads its
RESULT line: no response of 5xx, and the database audited against what the clients saw.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
SECONDS = 60


def soak(tmp_path: Path, *options: str) -> dict[str, float]:
    command = [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--seconds", str(SECONDS)]
    command += ["--clients", "10", "--data-dir", str(tmp_path / "data"), *options]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    print(output)
    [line] = [line for line in run.stdout.splitlines() if line.startswith("RESULT soak ")]
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.-]+)", line)}


def assert_clean(result: dict[str, float]) -> None:
    assert result["requests"] > 1000  # the clients really worked
    assert result["errors_5xx"] == 0
    assert result["consistent"] == 1


@pytest.mark.e2e
def test_the_embedded_default_serves_ten_people_at_once_without_a_5xx(tmp_path: Path) -> None:
    """SQLite and the filesystem broker, exactly as `make run` configures them."""
    assert_clean(soak(tmp_path))


@pytest.mark.e2e
def test_postgresql_and_redis_serve_ten_people_at_once_without_a_5xx(tmp_path: Path) -> None:
    database = settings.DATABASES["default"]
    broker = str(settings.CELERY_BROKER_URL)
    if not database["ENGINE"].endswith("postgresql") or not broker.startswith("redis://"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs with PostgreSQL and Redis (.ci/run)")
        pytest.skip("needs DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://...")
    password = f":{database['PASSWORD']}" if database["PASSWORD"] else ""
    host = f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}"
    url = f"postgres://{database['USER']}{password}@{host}/annotator_soak"
    assert_clean(soak(tmp_path, "--database-url", url, "--broker-url", broker))
