"""A mixed annotator / reviewer / manager workload against a running server, and its audit.

Used by ``benchmarks/soak.py`` (and through it by the concurrency tests). Each client is one
person with a token, in its own thread, acting through the HTTP API as the viewer and the
manager's pages do:

- annotators claim the next task, load it (task, lesions, the series' DICOMweb metadata, each
  latest mask's voxels), add a lesion where there is none (sometimes asking the model for a
  pre-segmentation and waiting for the job), save edited masks on the latest version, sometimes
  on a deliberately stale parent (409 expected) or several at once on one parent (one 201, the
  rest 409), record effort and submit;
- reviewers load a submitted task and accept or reject it (two reviewers may race: 409);
- the manager reopens accepted tasks (so work never runs out), and reads the dashboard and the
  audit trail.

Every response is checked against the statuses that request may give; anything else is
recorded with its body. Every change a client saw succeed is recorded as the audit event it
must have written, and :func:`audit_problems` compares them with the database afterwards.
"""

import gzip
import json
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import requests

PASSWORD = "soak-password"
SLUG = "soak"
JOB_WAIT_S = 60


@dataclass
class Tally:
    """What all clients saw: statuses, latencies, unexpected answers, and the changes made."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    # (action, task id, username): the audit events the server must have written
    actions: Counter[tuple[str, int | None, str]] = field(default_factory=Counter)
    saved_versions: set[int] = field(default_factory=set)

    def record(self, response: requests.Response, seconds: float, expected: Iterable[int]) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            self.latencies_ms.append(seconds * 1000)
            if response.status_code not in expected:
                request = response.request
                self.unexpected.append(
                    f"{request.method} {request.path_url} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

    def act(self, action: str, task: int | None, username: str) -> None:
        with self.lock:
            self.actions[(action, task, username)] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors_5xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    def p95_ms(self) -> float:
        if len(self.latencies_ms) < 2:
            return 0.0
        return statistics.quantiles(self.latencies_ms, n=20)[-1]


class Client:
    """One person's HTTP session (token auth) whose every call is checked and tallied."""

    def __init__(self, base: str, username: str, tally: Tally, seed: int) -> None:
        self.base = base
        self.username = username
        self.tally = tally
        self.random = random.Random(seed)
        self.session = requests.Session()
        response = self.session.post(
            f"{base}/api/auth/token/", data={"username": username, "password": PASSWORD}
        )
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Token {response.json()['token']}"

    def call(self, method: str, path: str, *expected: int, **kwargs: Any) -> requests.Response:
        started = time.perf_counter()
        url = path if path.startswith("http") else f"{self.base}{path}"
        try:
            response = self.session.request(method, url, timeout=120, **kwargs)
        except requests.RequestException as exc:  # name the request: the exception does not
            raise RuntimeError(
                f"{method} {path} after {time.perf_counter() - started:.3f} s"
            ) from exc
        self.tally.record(response, time.perf_counter() - started, expected or (200,))
        return response


class Annotator(Client):
    def __init__(self, *args: Any, shape: tuple[int, int, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shape = shape
        self.seen: set[int] = set()

    def step(self) -> None:
        answer = self.call("POST", f"/api/projects/{SLUG}/tasks/next/", 200, 204)
        if answer.status_code != 200:
            time.sleep(0.5)
            return
        task = answer.json()
        tid = task["id"]
        if tid not in self.seen and task["state"] == "assigned":
            self.tally.act("task.claimed", tid, self.username)
        self.seen.add(tid)
        self.call("GET", f"/api/tasks/{tid}/")
        series = task["series"]
        self.call(
            "GET",
            f"/dicomweb/studies/{series['study_instance_uid']}/series/"
            f"{series['series_instance_uid']}/metadata",
        )
        lesions = self.call("GET", f"/api/tasks/{tid}/lesions/").json()
        if not lesions:
            lesions = [self.add_lesion(tid)]
        for lesion in lesions:
            self.edit(tid, lesion["id"])
        now = datetime.now(UTC)
        interval = {
            "started_at": (now - timedelta(seconds=20)).isoformat(),
            "ended_at": now.isoformat(),
        }
        effort = {"intervals": [interval], "interactions": []}
        self.call("POST", f"/api/tasks/{tid}/effort/", 200, 201, json=effort)
        if self.call("POST", f"/api/tasks/{tid}/submit/").status_code == 200:
            self.tally.act("task.submitted", tid, self.username)

    def add_lesion(self, tid: int) -> dict[str, Any]:
        lesion = self.call(
            "POST", f"/api/tasks/{tid}/lesions/", 201, json={"lesion_class": "tumour"}
        ).json()
        if self.random.random() < 0.3:  # ask the model, and wait for it as the viewer does
            z, y, x = self.shape
            prompt = {"key_slice": z // 2, "box": [x // 4, y // 4, 3 * x // 4, 3 * y // 4]}
            job = self.call("POST", f"/api/lesions/{lesion['id']}/segment/", 202, json=prompt)
            self.wait_job(job.json())
        return dict(lesion)

    def wait_job(self, job: dict[str, Any]) -> None:
        deadline = time.monotonic() + JOB_WAIT_S
        while job["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = self.call("GET", f"/api/jobs/{job['id']}/").json()
        if job["state"] != "succeeded":
            with self.tally.lock:
                self.tally.unexpected.append(f"job {job['id']} {job['state']}: {job['error']}")

    def edit(self, tid: int, lesion_id: int) -> None:
        history = self.call("GET", f"/api/lesions/{lesion_id}/masks/").json()
        latest = history[-1]["id"] if history else None
        if latest is not None:
            self.call("GET", f"/api/masks/{latest}/data/")
        roll = self.random.random()
        if roll < 0.2 and latest is not None:  # an edit started from an older version
            stale = history[-2]["id"] if len(history) > 1 else None
            self.save(tid, lesion_id, stale, 409)
        elif roll < 0.4:  # the same edit sent several times at once: exactly one wins
            with ThreadPoolExecutor(3) as pool:
                codes = list(pool.map(lambda _: self.save(tid, lesion_id, latest), range(3)))
            if sorted(codes) != [201, 409, 409]:
                with self.tally.lock:
                    self.tally.unexpected.append(f"3 saves on one parent gave {codes}")
            return
        self.save(tid, lesion_id, latest)

    def save(self, tid: int, lesion_id: int, parent: int | None, *expected: int) -> int:
        mask = np.zeros(self.shape, dtype=np.uint8)
        z, y, x = (self.random.randrange(4, n - 4) for n in self.shape)
        mask[z - 2 : z + 2, y - 3 : y + 3, x - 3 : x + 3] = 1
        response = self.call(
            "POST",
            f"/api/lesions/{lesion_id}/masks/",
            *(expected or (201, 409)),
            data={"parent": "" if parent is None else str(parent), "encoding": "raw-gzip"},
            files={"mask": ("mask.raw.gz", gzip.compress(mask.tobytes(), compresslevel=1))},
        )
        if response.status_code == 201:
            self.tally.act("mask.saved", tid, self.username)
            with self.tally.lock:
                self.tally.saved_versions.add(response.json()["id"])
        return response.status_code


class Reviewer(Client):
    def step(self) -> None:
        listing = self.call("GET", f"/api/projects/{SLUG}/tasks/?state=submitted").json()
        waiting = listing["results"]
        if not waiting:
            time.sleep(0.5)
            return
        tid = self.random.choice(waiting)["id"]
        for lesion in self.call("GET", f"/api/tasks/{tid}/lesions/").json():
            if lesion["latest_mask"]:
                self.call("GET", f"/api/masks/{lesion['latest_mask']['id']}/data/")
        accept = self.random.random() < 0.6
        review = {"decision": "accept"} if accept else {"decision": "reject", "comment": "redo"}
        if self.call("POST", f"/api/tasks/{tid}/review/", 201, 409, json=review).status_code == 201:
            self.tally.act("review.created", tid, self.username)
            self.tally.act("task.accepted" if accept else "task.rejected", tid, self.username)


class Manager(Client):
    def step(self) -> None:
        accepted = self.call("GET", f"/api/projects/{SLUG}/tasks/?state=accepted").json()
        if accepted["results"]:
            tid = self.random.choice(accepted["results"])["id"]
            reopen = self.call(
                "POST", f"/api/tasks/{tid}/reopen/", 200, 409, json={"reason": "another look"}
            )
            if reopen.status_code == 200:
                self.tally.act("task.reopened", tid, self.username)
        if self.random.random() < 0.3:
            self.call("GET", f"/api/projects/{SLUG}/dashboard/")
            self.call("GET", f"/api/projects/{SLUG}/audit/")
        time.sleep(1.0)


def team(clients: int) -> dict[str, str]:
    """Usernames and roles for ``clients`` people: one manager, about a third reviewers."""
    reviewers = max(1, round((clients - 1) * 0.3))
    annotators = max(1, clients - 1 - reviewers)
    names = {"soak-manager": "manager"}
    names.update({f"soak-reviewer-{i}": "reviewer" for i in range(reviewers)})
    names.update({f"soak-annotator-{i}": "annotator" for i in range(annotators)})
    return names


def populate(*, clients: int, volumes: int, shape: tuple[int, int, int]) -> None:
    """The project, its people (password :data:`PASSWORD`) and ``volumes`` phantom tasks.

    Needs Django set up on the target database."""
    import tempfile
    from pathlib import Path

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from inference.engine import make_ct_phantom, write_phantom
    from projects.intake.image_import import volume_import
    from projects.models import Role
    from projects.services import membership_set, project_create

    users = get_user_model().objects
    people = {name: users.create_user(name, password=PASSWORD) for name in team(clients)}
    manager = people["soak-manager"]
    manager.user_permissions.add(Permission.objects.get(codename="add_project"))
    manager = users.get(pk=manager.pk)
    project = project_create(
        user=manager, name="Soak", slug=SLUG, modality="CT", lesion_classes=[{"name": "tumour"}]
    )
    for name, role in team(clients).items():
        if role != "manager":
            membership_set(project=project, user=people[name], role=Role(role))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(volumes):
            path = Path(tmp) / f"phantom-{seed}.nii.gz"
            write_phantom(make_ct_phantom(seed=seed, shape=shape, n_lesions=1), path)
            with open(path, "rb") as f:
                volume_import(project=project, file=f, filename=path.name)


def run(
    base: str, *, clients: int, seconds: float, shape: tuple[int, int, int], seed: int = 0
) -> Tally:
    """Every client of :func:`team` acting for ``seconds``; what they saw."""
    tally = Tally()
    people: list[Client] = []
    for index, (name, role) in enumerate(team(clients).items()):
        if role == "annotator":
            people.append(Annotator(base, name, tally, seed + index, shape=shape))
        else:
            people.append((Reviewer if role == "reviewer" else Manager)(base, name, tally, index))
    deadline = time.monotonic() + seconds

    def loop(client: Any) -> None:
        while time.monotonic() < deadline:
            try:
                client.step()
            except Exception as exc:  # a dropped connection, a body that is not JSON
                cause = (
                    f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
                )
                with tally.lock:
                    tally.unexpected.append(
                        f"{datetime.now(UTC):%H:%M:%S.%f} {client.username}: "
                        f"{type(exc).__name__}: {exc}{cause}"
                    )
                time.sleep(0.5)

    threads = [threading.Thread(target=loop, args=(c,), name=c.username) for c in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def audit_problems(tally: Tally) -> list[str]:
    """What in the database disagrees with what the clients saw (empty: consistent).

    Checks the audit trail against the clients' successful changes, every lesion's mask history
    (one root, one child per version, all of it one chain), the saved versions against the 201s,
    each task's state against its last audit event, and each mask's file in storage. Needs Django
    set up on the target database."""
    from django.core.files.storage import default_storage

    from annotator.models import MaskVersion
    from projects.models import AuditEvent, Task

    problems: list[str] = []
    events = AuditEvent.objects.filter(project__slug=SLUG).select_related("actor")
    logged = Counter((e.action, e.task_id, e.actor.username) for e in events if e.actor is not None)
    if logged != tally.actions:
        missing = tally.actions - logged
        extra = logged - tally.actions
        problems.append(f"audit differs: missing {dict(missing)}, unexplained {dict(extra)}")
    versions = list(MaskVersion.objects.filter(lesion__task__round__project__slug=SLUG))
    model_saves = events.filter(action="mask.saved", actor__isnull=True).count()
    if model_saves != sum(v.source == "model" for v in versions):
        problems.append(f"{model_saves} model saves audited for {len(versions)} versions")
    human = {v.pk for v in versions if v.source == "human"}
    if human != tally.saved_versions:
        problems.append(f"human versions {sorted(human ^ tally.saved_versions)} differ")
    by_lesion: dict[int, list[Any]] = {}
    for version in versions:
        by_lesion.setdefault(version.lesion_id, []).append(version)
    for lesion, chain in by_lesion.items():
        problems += chain_problems(lesion, chain)
    for version in versions:
        if not default_storage.exists(version.storage_key):
            problems.append(f"mask version {version.pk}: file {version.storage_key} missing")
    state_after = {
        "task.claimed": "assigned",
        "task.submitted": "submitted",
        "task.accepted": "accepted",
        "task.rejected": "rejected",
        "task.reopened": "assigned",
    }
    last: dict[int | None, str] = {}
    for event in events.filter(action__in=state_after).order_by("id"):
        last[event.task_id] = state_after[event.action]
    for task in Task.objects.filter(round__project__slug=SLUG):
        if last.get(task.pk, "unassigned") != task.state:
            problems.append(f"task {task.pk} is {task.state} after {last.get(task.pk)}")
    return problems


def chain_problems(lesion: int, versions: list[Any]) -> list[str]:
    """One root, at most one child each, and every version on the one chain from the root."""
    ids = {v.pk for v in versions}
    roots = [v for v in versions if v.parent_id is None]
    children = Counter(v.parent_id for v in versions if v.parent_id is not None)
    problems = []
    if len(roots) != 1:
        problems.append(f"lesion {lesion}: {len(roots)} roots")
    if any(parent not in ids for parent in children):
        problems.append(f"lesion {lesion}: a parent from another lesion")
    if any(n > 1 for n in children.values()):
        problems.append(f"lesion {lesion}: a version with several children")
    child_of = {v.parent_id: v.pk for v in versions if v.parent_id is not None}
    walked, node = 0, roots[0].pk if roots else None
    while node is not None and walked <= len(versions):
        walked, node = walked + 1, child_of.get(node)
    if walked != len(versions):
        problems.append(f"lesion {lesion}: {walked} of {len(versions)} versions on the chain")
    return problems


def summary(tally: Tally) -> dict[str, Any]:
    return {
        "requests": tally.requests,
        "statuses": dict(sorted(tally.statuses.items())),
        "errors_5xx": tally.errors_5xx,
        "p95_ms": round(tally.p95_ms(), 1),
        "actions": Counter(action for action, _, _ in tally.actions.elements()),
        "unexpected": tally.unexpected[:20],
    }


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, indent=1)
