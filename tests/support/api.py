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


def project_with_team(base: str, project: dict[str, Any], **members: str) -> dict[str, Api]:
    """Users ``mgr`` (who may create projects) and one per ``members`` (name=role, password
    "<name>-pw"); ``mgr`` creates ``project`` and adds them. Returns each user's Api by name.
    Needs the database (a live-server test)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    users = get_user_model().objects
    manager = users.create_user("mgr", password="mgr-pw")
    manager.user_permissions.add(Permission.objects.get(codename="add_project"))
    for name in members:
        users.create_user(name, password=f"{name}-pw")
    api = {name: Api(base, name, f"{name}-pw") for name in ("mgr", *members)}
    api["mgr"].call("POST", "/projects/", 201, json=project)
    for name, role in members.items():
        member = {"username": name, "role": role}
        api["mgr"].call("POST", f"/projects/{project['slug']}/members/", 201, json=member)
    return api
