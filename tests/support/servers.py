"""Starting real servers (Orthanc, gunicorn) for tests and benchmarks."""

import socket
import subprocess
import time

import requests


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
