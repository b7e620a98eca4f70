"""A script's view of the HTTP API, for tests that drive a live server like a client would."""

import time
from pathlib import Path
from typing import Any

import requests


class Api:
    """A script's view of the API: token auth, JSON in and out, status checked."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base + "/api"
        self.session = requests.Session()
        token = self.session.post(
            f"{self.base}/auth/token/", data={"username": username, "password": password}
        )
        assert token.status_code == 200, token.text
        self.session.headers["Authorization"] = f"Token {token.json()['token']}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response

    def wait_job(self, job: dict[str, Any], *, log: Path, timeout: float = 90) -> dict[str, Any]:
        """Polls an inference job until it is no longer queued or running; ``log``: the
        worker's output, shown when it does not finish in time."""
        deadline = time.monotonic() + timeout
        while job["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"job stuck:\n{log.read_text(errors='replace')}"
            time.sleep(0.2)
            job = self.call("GET", f"/jobs/{job['id']}/").json()
        return job
