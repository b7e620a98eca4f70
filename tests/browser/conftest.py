"""Fixtures of the browser tests: ``run_browser`` (harness.py) and a real Celery ``worker``."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    BrowserRunner,
    artifacts_root,
    browser_executable,
    node_toolchain,
    safe_name,
)
from tests.support.worker import Worker, running_worker


@pytest.fixture
def run_browser(request: pytest.FixtureRequest, tmp_path: Path) -> BrowserRunner:
    """Runs a scenario script against the live server; skips (fails in CI) without Chromium.

    Resolved before the test's own fixtures that need the live server, so a missing browser
    skips the test before any expensive setup.
    """
    executable = browser_executable()
    node = node_toolchain()
    live_server: Any = request.getfixturevalue("live_server")
    module = Path(str(request.node.path)).stem
    return BrowserRunner(
        base_url=live_server.url,
        out_dir=tmp_path / "browser",
        artifacts_dir=artifacts_root() / safe_name(f"{module}.{request.node.name}"),
        executable=executable,
        node=node,
    )


@pytest.fixture
def worker(
    request: pytest.FixtureRequest, live_server: Any, media_root: Path, tmp_path: Path
) -> Iterator[Worker]:
    """A real `celery worker` process on the same database, broker and files as the server;
    its log is kept beside the test's screenshots."""
    log = tmp_path / "worker.log"
    try:
        with running_worker(media_root=media_root, log=log) as process:
            yield process
    finally:
        module = Path(str(request.node.path)).stem
        kept = artifacts_root() / safe_name(f"{module}.{request.node.name}")
        if log.exists():
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, kept / "worker.log")
