"""Starting real servers (Orthanc, gunicorn, `manage.py serve`) for tests and benchmarks."""

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    url: str,
    *,
    session: requests.Session | None = None,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 30,
    request_timeout: float = 2,
) -> None:
    """Poll ``url`` until it answers 2xx; fail when ``process`` exits or ``timeout`` passes.

    A busy machine's first request can be slow: raise ``request_timeout`` to wait for it.
    """
    get = (session or requests).get
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(url, timeout=request_timeout).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.1)


@contextmanager
def serving(env: Mapping[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`manage.py serve` (gunicorn and a Celery worker, what `make run` starts) on a free port,
    with ``env`` (its database migrated), its output in ``log``; its base URL and process.
    Stopped as Ctrl-C stops it when the block ends."""
    port = free_port()
    command = [sys.executable, str(REPO / "manage.py"), "serve", "--port", str(port)]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/accounts/login/", process=server, timeout=120, request_timeout=10)
        yield base, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
