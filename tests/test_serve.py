"""`manage.py serve` (what `make run` starts): two instances on one machine stay apart."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.servers import REPO, serving


@contextmanager
def instance(data_dir: Path, home: Path) -> Iterator[str]:
    """An embedded instance with its own data folder, under ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(
        HOME=str(home),
        ANNOTATOR_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="annotator.settings",
    )
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, cwd=REPO, check=True)
    with serving(env, data_dir / "serve.log") as (base, _):
        yield base


@pytest.mark.e2e
def test_two_instances_on_one_machine_share_no_control_socket(tmp_path: Path) -> None:
    """gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl):
    a second instance would take the first's over. `serve` starts gunicorn without one."""
    home = tmp_path / "home"
    home.mkdir()
    with ExitStack() as stack:
        bases = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            bases.append(stack.enter_context(instance(tmp_path / name, home)))
        for base in bases:
            assert requests.get(f"{base}/accounts/login/", timeout=30).status_code == 200
        assert not list(home.rglob("*.ctl")), list(home.rglob("*"))


@pytest.mark.e2e
def test_the_banner_comes_after_the_start_up_lines(tmp_path: Path) -> None:
    """The URL is the last thing `make run` prints while it starts, where it is seen: after
    gunicorn's and Celery's start-up lines, not in the middle of them."""
    home = tmp_path / "home"
    home.mkdir()
    with instance(tmp_path, home) as base:
        log = tmp_path / "serve.log"
        deadline = time.monotonic() + 120
        while "Stop with Ctrl-C." not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = log.read_text().splitlines()
    port = base.rsplit(":", 1)[-1]
    banner = lines.index(f"  Lesion Annotator is running at http://127.0.0.1:{port}/")
    start_up = {
        "listening": [i for i, line in enumerate(lines) if "] Listening at: " in line],
        "web workers": [i for i, line in enumerate(lines) if "] Booting worker with pid" in line],
        "celery": [i for i, line in enumerate(lines) if re.search(r"celery@\S+ ready\.", line)],
    }
    assert [len(found) for found in start_up.values()] == [1, 2, 1], start_up
    assert max(max(found) for found in start_up.values()) < banner, "\n".join(lines)
    assert lines[banner + 1 : banner + 3] == [
        f"  API docs: http://127.0.0.1:{port}/api/docs/   database: sqlite3   broker: filesystem://",
        "  Stop with Ctrl-C.",
    ]
