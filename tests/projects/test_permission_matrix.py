"""The permission matrix: every API and DICOMweb endpoint x method x role gets the expected status.

Roles: ``anonymous``; ``foreign``, the annotator of another project (beta); and alpha's
``annotator`` (the assignee of alpha's tasks), ``reviewer`` and ``manager``. The rules:

- anonymous: 403 with DRF's "not authenticated" detail (session authentication comes first, so
  DRF answers 403, not 401), but 401 with ``WWW-Authenticate: Bearer realm="dicomweb"`` under
  ``/dicomweb/`` (its clients expect a challenge; the table says 403 for both, see
  ``anonymous_refusal``); the schema, its two viewers and the token endpoint are public;
- foreign: 404 with nothing but ``detail`` in the body, never 403 or 200, on anything of alpha;
  searches that are not scoped to a project answer 200 without a trace of alpha;
- a role the action is not for: 403 (a role refusal, not the authentication one);
- the roles it is for: 2xx, with a request that really succeeds.

The world (two projects with imported volumes, tasks in every state, lesions, masks, jobs,
models) is built once per module; every case runs in its own savepoint, rolled back afterwards,
so a submit, a review or a delete never spoils the next case. A refused request must leave the
database as it was; an accepted write must change it.

``test_every_route_is_in_the_matrix`` walks the URL resolver: a new endpoint or method under
``/api/`` or ``/dicomweb/`` fails it until it has its row here.
"""

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

from annotator.annotation.services import Author, effort_record, lesion_create, mask_version_save
from annotator.models import (
    ActiveInterval,
    Instance,
    Interaction,
    Lesion,
    MaskVersion,
    Pseudonym,
    Series,
    Study,
    Volume,
)
from inference.engine import Phantom
from inference.engine.learned_training import LEARNED_BACKEND
from inference.models import InferenceJob, ModelVersion, TrainingJob
from inference.services import segmentation_request
from projects.intake.image_import import volume_import
from projects.models import AuditEvent, Membership, Project, Review, Role, Round, Task
from projects.services import membership_set, project_create
from projects.task_services import task_claim_next, task_review, task_submit
from tests.support import orthanc

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "foreign", "annotator", "reviewer", "manager")
NOT_AUTHENTICATED = "Authentication credentials were not provided."
BOX = [30, 30, 60, 60]
KEY_SLICE = 12
T0, T1 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC), datetime(2026, 1, 5, 10, 1, tzinfo=UTC)


# The world: alpha with a team and objects in every state, beta with its own annotator.


@dataclass
class World:
    users: dict[str, int]  # role (and bystanders) -> user pk
    ids: dict[str, Any]  # the placeholders of the table's paths
    alpha: dict[str, set[Any]]  # what alpha's lists may show, by kind
    beta: dict[str, set[Any]]  # what must never show up in alpha's lists, by kind
    media: Path
    phantom_file: Path
    shape: tuple[int, int, int]

    def user(self, role: str) -> Any:
        """A fresh instance: role lookups are cached on the user object."""
        return get_user_model().objects.get(pk=self.users[role])

    def client(self, role: str) -> APIClient:
        client = APIClient()
        if role != "anonymous":
            client.force_authenticate(self.user(role))
        return client


def _user(username: str, *, can_create_projects: bool = False) -> Any:
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    if can_create_projects:
        user.user_permissions.add(Permission.objects.get(codename="add_project"))
    return user


def _project(slug: str, manager: Any) -> Project:
    return project_create(
        user=manager,
        name=slug.title(),
        slug=slug,
        modality="CT",
        lesion_classes=[{"name": "tumour"}, {"name": "node"}],
    )


def _import(project: Project, phantom_file: Path) -> Any:
    """What the ``import_volume`` fixture does (function-scoped, so not usable here)."""
    with open(phantom_file, "rb") as f:
        return volume_import(project=project, file=f, filename="phantom.nii.gz")


def _masked_lesion(task: Task, user: Any, mask: np.ndarray) -> tuple[Lesion, MaskVersion]:
    lesion = lesion_create(
        task=task, user=user, lesion_class="tumour", key_slice=KEY_SLICE, box=BOX
    )
    version = mask_version_save(
        lesion=lesion, mask=mask, source="human", author=Author(user=user), parent=None
    )
    return lesion, version


def _claim(user: Any, project: Project) -> Task:
    task = task_claim_next(user=user, project=project)
    assert task is not None
    return task


def build_world(phantom: Phantom, phantom_file: Path, media: Path) -> World:
    mask = phantom.lesion_masks[0]
    manager = _user("alpha-manager", can_create_projects=True)
    annotator, reviewer = _user("annotator"), _user("reviewer")
    annotator2 = _user("annotator2")
    _user("newcomer")  # added to alpha by the members case
    foreign, beta_manager = _user("foreign"), _user("beta-manager", can_create_projects=True)

    alpha = _project("alpha", manager)
    membership_set(project=alpha, user=annotator, role=Role.ANNOTATOR)
    membership_set(project=alpha, user=annotator2, role=Role.ANNOTATOR)
    reviewer_membership = membership_set(project=alpha, user=reviewer, role=Role.REVIEWER)
    imported = [_import(alpha, phantom_file) for _ in range(4)]
    # An accepted task, a submitted one, one being worked on, and one still in the pool.
    accepted = _claim(annotator, alpha)
    _masked_lesion(accepted, annotator, mask)
    task_submit(task=accepted, user=annotator)
    task_review(task=accepted, reviewer=reviewer, decision="accept")
    submitted = _claim(annotator, alpha)
    _masked_lesion(submitted, annotator, mask)
    task_submit(task=submitted, user=annotator)
    claimed = _claim(annotator, alpha)
    lesion, version = _masked_lesion(claimed, annotator, mask)
    job = segmentation_request(lesion=lesion, user=annotator, key_slice=KEY_SLICE, box=BOX)
    pool = Task.objects.get(series=imported[3].series)
    assert pool.state == Task.State.UNASSIGNED
    # A prompted lesion waiting for pre-annotation (as a labels import would leave it).
    Lesion.objects.create(task=pool, lesion_class="tumour", key_slice=KEY_SLICE, box=BOX)
    round0 = alpha.rounds.get(number=0)
    model = ModelVersion.objects.create(project=alpha, name="alpha-v1", backend=LEARNED_BACKEND)
    training = TrainingJob.objects.create(
        project=alpha, round=round0, requested_by=manager, state="succeeded", result=model
    )
    site_model = ModelVersion.objects.create(name="site-wide", backend=LEARNED_BACKEND)
    Pseudonym.objects.create(project=alpha, kind="patient", original="PAT-A", replacement="AA")

    beta = _project("beta", beta_manager)
    membership_set(project=beta, user=foreign, role=Role.ANNOTATOR)
    beta_imported = _import(beta, phantom_file)
    beta_task = _claim(foreign, beta)
    beta_lesion, beta_mask = _masked_lesion(beta_task, foreign, mask)
    beta_job = segmentation_request(lesion=beta_lesion, user=foreign, key_slice=KEY_SLICE, box=BOX)
    # Effort and a submission in beta: what alpha's dashboard and effort table must not count.
    effort_record(
        task=beta_task,
        user=foreign,
        intervals=[{"started_at": T0, "ended_at": T1, "lesion": beta_lesion.pk}],
        interactions=[{"tool": "brush", "at": T0, "lesion": beta_lesion.pk}],
    )
    task_submit(task=beta_task, user=foreign)
    for task, lesion_pk in ((claimed, lesion.pk), (accepted, None)):
        effort_record(
            task=task,
            user=annotator,
            intervals=[{"started_at": T0, "ended_at": T1, "lesion": lesion_pk}],
            interactions=[],
        )
    beta_model = ModelVersion.objects.create(project=beta, name="beta-v1", backend=LEARNED_BACKEND)
    beta_training = TrainingJob.objects.create(
        project=beta, round=beta.rounds.get(number=0), state="succeeded", result=beta_model
    )
    Pseudonym.objects.create(project=beta, kind="patient", original="PAT-B", replacement="BB")

    series = claimed.series
    instance = series.instances.order_by("frame_offset").first()
    assert instance is not None

    def of(project: Project) -> dict[str, set[Any]]:
        return {
            "projects": {project.slug},
            "tasks": set(Task.objects.filter(round__project=project).values_list("pk", flat=True)),
            "lesions": set(
                Lesion.objects.filter(task__round__project=project).values_list("pk", flat=True)
            ),
            "rounds": set(project.rounds.values_list("pk", flat=True)),
            "members": set(project.memberships.values_list("pk", flat=True)),
            "models": set(project.model_versions.values_list("pk", flat=True)),
            "audit": set(project.audit_events.values_list("pk", flat=True)),
            "pseudonyms": set(
                Pseudonym.objects.filter(project=project).values_list("replacement", flat=True)
            ),
            "studies": set(
                Study.objects.filter(project=project).values_list("study_instance_uid", flat=True)
            ),
            "series": set(
                Series.objects.filter(study__project=project).values_list(
                    "series_instance_uid", flat=True
                )
            ),
            "instances": set(
                Instance.objects.filter(series__study__project=project).values_list(
                    "sop_instance_uid", flat=True
                )
            ),
        }

    users = {
        "foreign": foreign.pk,
        "annotator": annotator.pk,
        "reviewer": reviewer.pk,
        "manager": manager.pk,
        "annotator2": annotator2.pk,
        "beta-manager": beta_manager.pk,
    }
    ids = {
        "alpha": alpha.slug,
        "round": round0.number,
        "member": reviewer_membership.pk,
        "claimed": claimed.pk,
        "submitted": submitted.pk,
        "accepted": accepted.pk,
        "lesion": lesion.pk,
        "mask": version.pk,
        "job": job.pk,
        "training": training.pk,
        "site_model": site_model.pk,
        "study": series.study.study_instance_uid,
        "series": series.series_instance_uid,
        "sop": instance.sop_instance_uid,
        "beta_task": beta_task.pk,
        "beta_lesion": beta_lesion.pk,
        "beta_mask": beta_mask.pk,
        "beta_job": beta_job.pk,
        "beta_training": beta_training.pk,
        "beta_member": Membership.objects.get(project=beta, user=foreign).pk,
        "beta_study": beta_imported.series.study.study_instance_uid,
    }
    shape = claimed.series.volume.shape_zyx
    return World(users, ids, of(alpha), of(beta), media, phantom_file, shape)


@pytest.fixture(scope="module")
def world(
    django_db_setup: None,
    django_db_blocker: Any,
    phantom: Phantom,
    phantom_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """Built once in an outer transaction; each test's own transaction is a savepoint in it."""
    media = tmp_path_factory.mktemp("matrix-media")
    storages = override_settings(
        STORAGES={
            **django_settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(media), "base_url": "/media/"},
            },
        }
    )
    storages.enable()
    outer = transaction.atomic()
    try:
        with django_db_blocker.unblock():
            outer.__enter__()
            built = build_world(phantom, phantom_file, media)
        yield built
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
        storages.disable()


@pytest.fixture(autouse=True)
def media_root(world: World) -> Path:
    """Overrides the conftest's per-test folder: the cases read the world's files."""
    return world.media


@pytest.fixture(scope="module")
def pacs() -> Iterator[orthanc.Orthanc]:
    if not orthanc.available():
        pytest.skip("needs Debian's orthanc + orthanc-dicomweb for a real PACS")
    with orthanc.running_orthanc() as server:
        assert server.upload([Path(ct_small())]) == 1
        yield server


def ct_small() -> str:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    return path


# The table.


Body = Callable[[World], tuple[Any, str | None]]


def json_body(data: dict[str, Any] | Callable[[World], dict[str, Any]]) -> Body:
    return lambda w: (data(w) if callable(data) else data, "json")


def volume_file(w: World) -> tuple[Any, str | None]:
    upload = SimpleUploadedFile("phantom.nii.gz", w.phantom_file.read_bytes())
    return {"file": upload, "description": "matrix"}, "multipart"


def dicom_files(w: World) -> tuple[Any, str | None]:
    upload = SimpleUploadedFile("CT_small.dcm", Path(ct_small()).read_bytes())
    return {"files": [upload]}, "multipart"


def mask_upload(w: World) -> tuple[Any, str | None]:
    voxels = np.zeros(w.shape, dtype=np.uint8)
    voxels[KEY_SLICE, 40:50, 40:50] = 1
    upload = SimpleUploadedFile("mask.raw.gz", gzip.compress(voxels.tobytes()))
    return {"parent": w.ids["mask"], "encoding": "raw-gzip", "mask": upload}, "multipart"


def stow_body(w: World) -> tuple[Any, str | None]:
    """A new series of alpha's study, as one STOW-RS part."""
    path = get_testdata_file("emri_small.dcm")
    assert isinstance(path, str)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = w.ids["study"]
    ds.SeriesInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    part = b"--matrix\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue()
    return (
        part + b"\r\n--matrix--\r\n",
        'multipart/related; type="application/dicom"; boundary=matrix',
    )


def effort_body(w: World) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # recent, as the API asks
    at, end = start.isoformat(), (start + timedelta(minutes=1)).isoformat()
    return {
        "intervals": [{"started_at": at, "ended_at": end, "lesion": w.ids["lesion"]}],
        "interactions": [{"tool": "brush", "at": at, "lesion": w.ids["lesion"], "slice_index": 3}],
    }


Check = Callable[[Any, World, str], None]


@dataclass(frozen=True)
class Row:
    name: str  # the URL pattern's name
    method: str
    path: str  # formatted with World.ids
    expected: tuple[int, int, int, int, int]  # in ROLES order
    body: Body | None = None
    accept: str | None = None
    check: Check | None = None  # on every answer with a 2xx status
    writes: bool | None = None  # an accepted request changes the database (default: not GET)
    idempotent_for: tuple[str, ...] = ()  # roles whose accepted write changes nothing
    pacs: bool = False  # the accepted request needs a PACS
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}-{self.method}"


def any_user(ok: int = 200) -> tuple[int, int, int, int, int]:
    """Not scoped to a project: every signed-in user, each seeing only their own."""
    return (403, ok, ok, ok, ok)


def members(ok: int = 200) -> tuple[int, int, int, int, int]:
    return (403, 404, ok, ok, ok)


def managers(ok: int = 200) -> tuple[int, int, int, int, int]:
    return (403, 404, 403, 403, ok)


def assignee(ok: int = 200) -> tuple[int, int, int, int, int]:
    """Only the task's annotator: the manager and the reviewer see the task but may not edit."""
    return (403, 404, ok, 403, 403)


def reviewers(ok: int = 200) -> tuple[int, int, int, int, int]:
    return (403, 404, 403, ok, ok)


def claimers(ok: int = 200) -> tuple[int, int, int, int, int]:
    return (403, 404, ok, 403, ok)


PUBLIC = (200, 200, 200, 200, 200)


def _json(response: Any) -> Any:
    data = response.json()
    return data["results"] if isinstance(data, dict) and "results" in data else data


def check_me(response: Any, w: World, role: str) -> None:
    assert response.json()["id"] == w.users[role]


def check_projects(response: Any, w: World, role: str) -> None:
    own = [(p["slug"], p["my_role"]) for p in _json(response)]
    assert own == ([("beta", "annotator")] if role == "foreign" else [("alpha", role)])


def check_tasks(response: Any, w: World, role: str) -> None:
    got = sorted(t["id"] for t in _json(response))
    mine = {w.ids["claimed"], w.ids["submitted"], w.ids["accepted"]}
    assert got == sorted(mine if role == "annotator" else w.alpha["tasks"])


def uids(tag: str) -> Callable[[Any], list[str]]:
    return lambda response: [item[tag]["Value"][0] for item in response.json()]


def check_qido(kind: str, tag: str) -> Check:
    def check(response: Any, w: World, role: str) -> None:
        found = sorted(uids(tag)(response))
        assert response["Content-Type"] == "application/dicom+json"
        if role == "foreign":  # they see their own project's, never alpha's
            assert found == sorted(w.beta[kind])
        else:
            assert found == sorted(w.alpha[kind])

    return check


def check_pacs_studies(response: Any, w: World, role: str) -> None:
    found = [s["study_instance_uid"] for s in response.json()]
    assert found == [str(pydicom.dcmread(ct_small()).StudyInstanceUID)]


def check_preannotation_started(response: Any, w: World, role: str) -> None:
    body = response.json()
    assert body["started"] == 1 and body["queued"] == 1, body  # the pool task's prompted lesion


def check_nonempty(response: Any, w: World, role: str) -> None:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert len(body) > 100


S = "/dicomweb/studies/{study}"
SE = S + "/series/{series}"
INST = SE + "/instances/{sop}"
DICOM_JSON = "application/dicom+json"

TABLE: list[Row] = [
    # public
    Row(
        "api-token",
        "POST",
        "/api/auth/token/",
        PUBLIC,
        json_body({"username": "annotator", "password": "pw-annotator"}),
        writes=False,
        note="anyone may exchange a password for a token",
    ),
    Row(
        "api-logout",
        "POST",
        "/api/auth/logout/",
        any_user(204),
        writes=False,
        note="revokes the token of the request (these clients carry none: tests/test_auth.py)",
    ),
    Row(
        "api-logout-all",
        "POST",
        "/api/auth/logoutall/",
        any_user(204),
        writes=False,
        note="revokes every token of the user (none here: tests/test_auth.py)",
    ),
    Row("schema", "GET", "/api/schema/", PUBLIC, check=check_nonempty),
    Row("docs", "GET", "/api/docs/", PUBLIC, check=check_nonempty),
    Row("redoc", "GET", "/api/redoc/", PUBLIC, check=check_nonempty),
    # the user and projects
    Row("me", "GET", "/api/me/", any_user(), check=check_me),
    Row("project-list", "GET", "/api/projects/", any_user(), check=check_projects),
    Row(
        "project-list",
        "POST",
        "/api/projects/",
        (403, 403, 403, 403, 201),
        json_body(
            {
                "name": "Gamma",
                "slug": "gamma",
                "modality": "CT",
                "lesion_classes": [{"name": "tumour"}],
            }
        ),
        note="needs the add_project permission, which alpha's manager has (no project role)",
    ),
    Row("project", "GET", "/api/projects/{alpha}/", members()),
    Row("project", "PATCH", "/api/projects/{alpha}/", managers(), json_body({"name": "Alpha 2"})),
    Row("members", "GET", "/api/projects/{alpha}/members/", managers()),
    Row(
        "members",
        "POST",
        "/api/projects/{alpha}/members/",
        managers(201),
        json_body({"username": "newcomer", "role": "annotator"}),
    ),
    Row("member", "DELETE", "/api/projects/{alpha}/members/{member}/", managers(204)),
    Row("upload", "POST", "/api/projects/{alpha}/volumes/", managers(201), volume_file),
    Row("imports", "POST", "/api/projects/{alpha}/imports/", managers(201), dicom_files),
    Row(
        "pacs-studies",
        "GET",
        "/api/projects/{alpha}/pacs/studies/",
        managers(),
        check=check_pacs_studies,
        pacs=True,
    ),
    Row(
        "pacs-imports",
        "POST",
        "/api/projects/{alpha}/pacs/imports/",
        managers(201),
        json_body(lambda w: {"study_uids": [str(pydicom.dcmread(ct_small()).StudyInstanceUID)]}),
        pacs=True,
    ),
    Row("rounds", "GET", "/api/projects/{alpha}/rounds/", members()),
    Row("rounds", "POST", "/api/projects/{alpha}/rounds/", managers(201)),
    Row("dashboard", "GET", "/api/projects/{alpha}/dashboard/", managers()),
    Row("effort-csv", "GET", "/api/projects/{alpha}/effort.csv", managers()),
    Row("pseudonyms", "GET", "/api/projects/{alpha}/pseudonyms/", managers()),
    Row("round-export", "GET", "/api/projects/{alpha}/rounds/{round}/export/", managers()),
    Row(
        "round-export-files",
        "GET",
        "/api/projects/{alpha}/rounds/{round}/export/files/?formats=nifti",
        managers(),
    ),
    Row(
        "round-preannotate", "GET", "/api/projects/{alpha}/rounds/{round}/preannotate/", managers()
    ),
    Row(
        "round-preannotate",
        "POST",
        "/api/projects/{alpha}/rounds/{round}/preannotate/",
        managers(202),
        check=check_preannotation_started,
    ),
    Row("round-train", "POST", "/api/projects/{alpha}/rounds/{round}/train/", managers(202)),
    Row("model-versions", "GET", "/api/projects/{alpha}/model-versions/", members()),
    Row(
        "model-version-promote",
        "POST",
        "/api/projects/{alpha}/model-versions/{site_model}/promote/",
        managers(),
    ),
    # tasks
    Row("tasks", "GET", "/api/projects/{alpha}/tasks/", members(), check=check_tasks),
    Row(
        "next",
        "POST",
        "/api/projects/{alpha}/tasks/next/",
        claimers(),
        idempotent_for=("annotator",),
        note="the annotator gets their own open task back; the manager claims the pool's",
    ),
    Row("task", "GET", "/api/tasks/{claimed}/", members()),
    Row("task-submit", "POST", "/api/tasks/{claimed}/submit/", assignee()),
    Row("task-review", "GET", "/api/tasks/{submitted}/review/", members()),
    Row(
        "task-review",
        "POST",
        "/api/tasks/{submitted}/review/",
        reviewers(201),
        json_body({"decision": "accept"}),
    ),
    Row(
        "task-assign",
        "POST",
        "/api/tasks/{claimed}/assign/",
        managers(),
        json_body({"user": "annotator2"}),
    ),
    Row("task-release", "POST", "/api/tasks/{claimed}/release/", managers()),
    Row(
        "task-reopen",
        "POST",
        "/api/tasks/{accepted}/reopen/",
        managers(),
        json_body({"reason": "recheck"}),
    ),
    Row("task-audit", "GET", "/api/tasks/{claimed}/audit/", members()),
    Row("audit", "GET", "/api/projects/{alpha}/audit/", managers()),
    # lesions, masks, jobs
    Row("lesions", "GET", "/api/tasks/{claimed}/lesions/", members()),
    Row(
        "lesions",
        "POST",
        "/api/tasks/{claimed}/lesions/",
        assignee(201),
        json_body({"lesion_class": "node", "key_slice": 3, "box": [1, 1, 9, 9]}),
    ),
    Row("effort", "POST", "/api/tasks/{claimed}/effort/", assignee(201), json_body(effort_body)),
    Row("lesion", "GET", "/api/lesions/{lesion}/", members()),
    Row(
        "lesion", "PATCH", "/api/lesions/{lesion}/", assignee(), json_body({"lesion_class": "node"})
    ),
    Row("lesion", "DELETE", "/api/lesions/{lesion}/", assignee(204)),
    Row(
        "lesion-segment",
        "POST",
        "/api/lesions/{lesion}/segment/",
        assignee(202),
        json_body({"key_slice": KEY_SLICE, "box": [20, 20, 70, 70]}),
    ),
    Row("masks", "GET", "/api/lesions/{lesion}/masks/", members()),
    Row("masks", "POST", "/api/lesions/{lesion}/masks/", assignee(201), mask_upload),
    Row("mask", "GET", "/api/masks/{mask}/", members()),
    Row("mask-data", "GET", "/api/masks/{mask}/data/", members(), check=check_nonempty),
    Row("job", "GET", "/api/jobs/{job}/", members()),
    Row("training-job", "GET", "/api/training-jobs/{training}/", managers()),
    # DICOMweb: QIDO-RS searches (not scoped to a project: the foreign annotator sees beta's)
    Row(
        "dicomweb-studies",
        "GET",
        "/dicomweb/studies",
        any_user(),
        accept=DICOM_JSON,
        check=check_qido("studies", "0020000D"),
    ),
    Row(
        "dicomweb-series",
        "GET",
        "/dicomweb/series",
        any_user(),
        accept=DICOM_JSON,
        check=check_qido("series", "0020000E"),
    ),
    Row(
        "dicomweb-instances",
        "GET",
        "/dicomweb/instances",
        any_user(),
        accept=DICOM_JSON,
        check=check_qido("instances", "00080018"),
    ),
    Row("dicomweb-study-series", "GET", S + "/series", members(), accept=DICOM_JSON),
    Row("dicomweb-study-instances", "GET", S + "/instances", members(), accept=DICOM_JSON),
    Row("dicomweb-series-instances", "GET", SE + "/instances", members(), accept=DICOM_JSON),
    # WADO-RS
    Row("dicomweb-study", "GET", S, members(), check=check_nonempty),
    Row("dicomweb-study-metadata", "GET", S + "/metadata", members(), accept=DICOM_JSON),
    Row("dicomweb-series-retrieve", "GET", SE, members(), check=check_nonempty),
    Row("dicomweb-series-metadata", "GET", SE + "/metadata", members(), accept=DICOM_JSON),
    Row("dicomweb-instance", "GET", INST, members(), check=check_nonempty),
    Row("dicomweb-instance-metadata", "GET", INST + "/metadata", members(), accept=DICOM_JSON),
    Row("dicomweb-frames", "GET", INST + "/frames/1", members(), check=check_nonempty),
    Row("dicomweb-instance-rendered", "GET", INST + "/rendered", members(), check=check_nonempty),
    Row(
        "dicomweb-frames-rendered",
        "GET",
        INST + "/frames/1/rendered",
        members(),
        check=check_nonempty,
    ),
    Row("dicomweb-study-thumbnail", "GET", S + "/thumbnail", members(), check=check_nonempty),
    Row("dicomweb-series-thumbnail", "GET", SE + "/thumbnail", members(), check=check_nonempty),
    Row("dicomweb-instance-thumbnail", "GET", INST + "/thumbnail", members(), check=check_nonempty),
    Row(
        "dicomweb-frames-thumbnail",
        "GET",
        INST + "/frames/1/thumbnail",
        members(),
        check=check_nonempty,
    ),
    # STOW-RS: into the project named by the query parameter, by its managers
    Row("dicomweb-studies", "POST", "/dicomweb/studies?project={alpha}", managers(), stow_body),
    Row("dicomweb-study", "POST", S + "?project={alpha}", managers(), stow_body),
]

PUBLIC_ROUTES = {"api-token", "schema", "docs", "redoc"}


def anonymous_refusal(path: str) -> int:
    """The API answers no credentials 403 (session authentication comes first); DICOMweb 401
    with a challenge (its token authentication comes first)."""
    return 401 if path.startswith("/dicomweb/") else 403


CASES = [pytest.param(row, role, id=f"{row.id}-{role}") for row in TABLE for role in ROLES]


def fingerprint() -> dict[str, Any]:
    """What a refused request must leave as it was, and an accepted write must change."""
    models: list[Any] = [
        Project, Membership, Round, Task, Review, AuditEvent, Study, Series, Volume, Instance,
        Lesion, MaskVersion, InferenceJob, TrainingJob, ModelVersion, ActiveInterval,
        Interaction, Pseudonym,
    ]  # fmt: skip
    return {
        "counts": {model.__name__: model.objects.count() for model in models},
        "projects": sorted(Project.objects.values_list("pk", "name")),
        "tasks": sorted(Task.objects.values_list("pk", "state", "assignee_id", "reviewer_id")),
        "lesions": sorted(
            (pk, cls, k, tuple(box or ()))
            for pk, cls, k, box in Lesion.objects.values_list(
                "pk", "lesion_class", "key_slice", "box"
            )
        ),
        "rounds": sorted(Round.objects.values_list("pk", "state")),
    }


def send(client: APIClient, row: Row, w: World) -> Any:
    path = row.path.format(**w.ids)
    headers = {"HTTP_ACCEPT": row.accept} if row.accept else {}
    data, fmt = row.body(w) if row.body else (None, None)
    call = getattr(client, row.method.lower())
    if row.method == "GET":
        return call(path, **headers)
    if fmt is not None and "/" in fmt:  # a raw body and its Content-Type (STOW-RS)
        return call(path, data, content_type=fmt, **headers)
    return call(path, data, format=fmt, **headers)


@pytest.mark.parametrize(("row", "role"), CASES)
def test_permission_matrix(row: Row, role: str, world: World, request: Any, settings: Any) -> None:
    expected = row.expected[ROLES.index(role)]
    if role == "anonymous" and expected == 403:
        expected = anonymous_refusal(row.path)
    if row.pacs and 200 <= expected < 300:
        settings.PACS_DICOMWEB_URL = request.getfixturevalue("pacs").dicomweb
    client = world.client(role)
    before = fingerprint()
    response = send(client, row, world)
    after = fingerprint()
    body = b"" if response.streaming else response.content
    assert response.status_code == expected, (row.id, role, body[:500])

    if 200 <= expected < 300:
        if row.check is not None:
            row.check(response, world, role)
        writes = row.method != "GET" if row.writes is None else row.writes
        if writes and role not in row.idempotent_for:
            assert after != before, f"{row.id} answered {expected} but changed nothing"
        else:
            assert after == before, f"{row.id} changed the database"
        return
    assert after == before, f"the refused {row.id} changed the database"
    detail = response.json()
    assert set(detail) == {"detail"}, detail  # nothing about the object, no field errors
    if role == "anonymous":
        if expected == 401:
            assert response["WWW-Authenticate"] == 'Bearer realm="dicomweb"'
        assert detail["detail"] == NOT_AUTHENTICATED
    else:
        assert detail["detail"] != NOT_AUTHENTICATED


def test_the_table_follows_the_rules() -> None:
    """Anonymous is refused except on the public routes; the foreign annotator gets 404 on
    everything that names an object of alpha; the other refusals are 403, acceptances 2xx."""
    for row in TABLE:
        anonymous, foreign, *team = row.expected
        if row.name in PUBLIC_ROUTES:
            assert row.expected == PUBLIC, row.id
            continue
        assert anonymous == 403, row.id
        if "{" in row.path:
            assert foreign == 404, row.id
        else:  # not scoped to a project: allowed (seeing only beta), or a permission refusal
            assert foreign == 403 or 200 <= foreign < 300, row.id
        assert all(status == 403 or 200 <= status < 300 for status in team), row.id
        assert any(200 <= status < 300 for status in team), row.id  # somebody may do it


# The guard: every route and method is in the table.


def _routes(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str | None, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name, pattern.callback


def _methods(callback: Any) -> set[str]:
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    assert view is not None, f"{callback} is not a class-based view: list its methods by hand"
    return {
        m.upper()
        for m in view.http_method_names
        if m not in ("options", "head") and hasattr(view, m)
    }


def test_every_route_is_in_the_matrix() -> None:
    served: set[tuple[str, str]] = set()
    for route, name, callback in _routes(get_resolver().url_patterns):
        if not route.startswith(("api/", "dicomweb/")):
            continue
        assert name, f"{route} has no name: name it and add it to the matrix"
        served |= {(name, method) for method in _methods(callback)}
    tabled = {(row.name, row.method) for row in TABLE}
    assert len(tabled) == len(TABLE), "a route and method is in the table twice"
    assert served - tabled == set(), "endpoints missing from the permission matrix"
    assert tabled - served == set(), "the matrix lists endpoints that no longer exist"
    assert {row.name for row in TABLE if row.expected == PUBLIC} == PUBLIC_ROUTES


# Leaks: nothing of beta in what alpha's members list, nor of alpha in the foreign annotator's.


def key(name: str) -> Callable[[Any], list[Any]]:
    return lambda response: [item[name] for item in _json(response)]


LISTS: list[tuple[str, str, str, Callable[[Any], list[Any]]]] = [
    # (kind, path, who may list it, the identifiers in the answer)
    ("projects", "/api/projects/", "any", key("slug")),
    ("tasks", "/api/projects/{alpha}/tasks/", "members", key("id")),
    ("rounds", "/api/projects/{alpha}/rounds/", "members", key("id")),
    ("models", "/api/projects/{alpha}/model-versions/", "members", key("id")),
    ("members", "/api/projects/{alpha}/members/", "manager", key("id")),
    ("audit", "/api/projects/{alpha}/audit/", "manager", key("id")),
    ("pseudonyms", "/api/projects/{alpha}/pseudonyms/", "manager", key("replacement")),
    ("studies", "/dicomweb/studies", "any", uids("0020000D")),
    ("series", "/dicomweb/series", "any", uids("0020000E")),
    ("instances", "/dicomweb/instances", "any", uids("00080018")),
]


@pytest.mark.parametrize("role", ["annotator", "reviewer", "manager"])
def test_lists_of_alpha_members_hold_nothing_of_beta(role: str, world: World) -> None:
    client = world.client(role)
    for kind, path, who, ids_of in LISTS:
        if who == "manager" and role != "manager":
            continue
        response = client.get(path.format(**world.ids))
        assert response.status_code == 200, (kind, response.content)
        listed = ids_of(response)
        found = set(listed)
        assert len(listed) == len(found), (kind, listed)  # no duplicates from the joins
        assert found, kind  # not vacuous: alpha's objects are there
        assert not found & world.beta[kind], (kind, found & world.beta[kind])
        if kind == "tasks" and role == "annotator":
            assert found == {world.ids[k] for k in ("claimed", "submitted", "accepted")}
        elif kind == "models":  # the project's own and the site-wide ones
            assert found == world.alpha["models"] | {world.ids["site_model"]}
        else:
            assert found == world.alpha[kind], kind
    # The task trail holds only the task's events.
    trail = client.get(f"/api/tasks/{world.ids['claimed']}/audit/")
    assert {e["task"] for e in _json(trail)} == {world.ids["claimed"]}


def test_foreign_annotator_lists_hold_nothing_of_alpha(world: World) -> None:
    client = world.client("foreign")
    for kind, path, who, ids_of in LISTS:
        if who != "any":
            continue
        listed = ids_of(client.get(path.format(**world.ids)))
        assert sorted(listed) == sorted(world.beta[kind]), kind
    for level in ("studies", "series", "instances"):
        found = client.get(f"/dicomweb/{level}", {"StudyInstanceUID": world.ids["study"]})
        assert found.status_code == 200 and found.json() == [], level


def test_filters_naming_beta_objects_find_nothing(world: World) -> None:
    """Filters and lookups by another project's identifiers return nothing, not its objects."""
    w = world
    manager = w.client("manager")
    alpha = w.ids["alpha"]
    audit = manager.get(f"/api/projects/{alpha}/audit/", {"task": w.ids["beta_task"]})
    assert audit.status_code == 200 and _json(audit) == []
    own = manager.get(f"/api/projects/{alpha}/audit/", {"task": w.ids["claimed"]})
    assert _json(own)  # the filter itself works
    beta_uid = w.ids["beta_study"]
    for path, params in [
        ("/dicomweb/studies", {"StudyInstanceUID": beta_uid}),
        ("/dicomweb/series", {"StudyInstanceUID": beta_uid}),
        ("/dicomweb/instances", {"StudyInstanceUID": beta_uid}),
        ("/dicomweb/studies", {"PatientID": "*"}),
    ]:
        found = manager.get(path, params, HTTP_ACCEPT=DICOM_JSON).json()
        assert all(item["0020000D"]["Value"] != [beta_uid] for item in found), path
    assert manager.get(f"/dicomweb/studies/{beta_uid}/series").status_code == 404


def test_requests_naming_beta_objects_are_refused(world: World) -> None:
    """Alpha's manager and annotator cannot reach beta's objects through alpha's endpoints."""
    w = world
    manager, annotator = w.client("manager"), w.client("annotator")
    alpha = w.ids["alpha"]
    before = fingerprint()
    # another project's membership, through alpha's members URL
    assert (
        manager.delete(f"/api/projects/{alpha}/members/{w.ids['beta_member']}/").status_code == 404
    )
    # a beta user assigned to an alpha task
    response = manager.post(
        f"/api/tasks/{w.ids['claimed']}/assign/", {"user": "foreign"}, format="json"
    )
    assert response.status_code == 400 and "not an annotator" in response.json()["detail"]
    # a beta mask as the parent of an alpha mask
    data, _ = mask_upload(w)
    data["parent"] = w.ids["beta_mask"]
    response = annotator.post(f"/api/lesions/{w.ids['lesion']}/masks/", data, format="multipart")
    assert response.status_code == 404
    # a beta lesion in alpha's effort record
    effort = effort_body(w)
    effort["intervals"][0]["lesion"] = w.ids["beta_lesion"]
    response = annotator.post(f"/api/tasks/{w.ids['claimed']}/effort/", effort, format="json")
    assert response.status_code == 400
    # beta's jobs by id
    assert manager.get(f"/api/jobs/{w.ids['beta_job']}/").status_code == 404
    assert manager.get(f"/api/training-jobs/{w.ids['beta_training']}/").status_code == 404
    assert fingerprint() == before


def test_options_tell_nothing_about_objects(world: World) -> None:
    """OPTIONS (DRF's metadata) answers the foreign annotator exactly as it answers alpha's
    manager, so it cannot probe which of alpha's objects exist; anonymous is refused."""
    foreign, manager, anonymous = (world.client(r) for r in ("foreign", "manager", "anonymous"))
    for path in sorted({row.path.format(**world.ids) for row in TABLE}):
        if path.startswith("/api/") and path.rstrip("/").rsplit("/", 1)[-1] in (
            "schema", "docs", "redoc", "token"
        ):  # fmt: skip
            continue
        seen, told = foreign.options(path), manager.options(path)
        assert (seen.status_code, seen.content) == (told.status_code, told.content), path
        assert seen.status_code == 200, path
        assert anonymous.options(path).status_code == anonymous_refusal(path), path


def test_dashboard_and_effort_table_count_only_alpha(world: World) -> None:
    """Beta's submitted task, its annotator and their effort appear in neither."""
    manager, alpha = world.client("manager"), world.ids["alpha"]
    dashboard = manager.get(f"/api/projects/{alpha}/dashboard/").json()
    assert dashboard["project"] == alpha
    names = {row["annotator"] for row in dashboard["annotators"] + dashboard["throughput"]}
    assert "annotator" in names and "foreign" not in names, names
    assert sum(row["total"] for row in dashboard["queue"]) == len(world.alpha["tasks"])
    response = manager.get(f"/api/projects/{alpha}/effort.csv")
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows and {r["project"] for r in rows} == {alpha}
    assert {int(r["task"]) for r in rows} <= world.alpha["tasks"]
    assert not {int(r["lesion"]) for r in rows} & world.beta["lesions"]
    assert "foreign" not in {r["annotator"] for r in rows}
    beta = world.client("foreign")
    assert beta.get(f"/api/projects/{alpha}/dashboard/").status_code == 404


def test_bad_credentials_are_refused_like_anonymous(world: World) -> None:
    """A wrong token is refused everywhere, API and DICOMweb: 401 with ``WWW-Authenticate:
    Token`` (a token was sent and refused; no credentials at all stay 403), and an inactive
    user's valid token does not open anything."""
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    for path in ("/api/me/", "/api/projects/{alpha}/", "/dicomweb/studies", "/api/jobs/{job}/"):
        response = bad.get(path.format(**world.ids))
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Token", path
        assert response.json() == {"detail": "Invalid token."}, path
    token = APIClient().post(
        "/api/auth/token/", {"username": "annotator", "password": "pw-annotator"}, format="json"
    )
    good = APIClient()
    good.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert good.get(f"/api/tasks/{world.ids['claimed']}/").status_code == 200
    get_user_model().objects.filter(pk=world.users["annotator"]).update(is_active=False)
    response = good.get(f"/api/tasks/{world.ids['claimed']}/")
    assert response.status_code == 401
    assert response.json() == {"detail": "User inactive or deleted."}


def test_methods_outside_the_table_are_not_allowed(world: World) -> None:
    """Every other method of every route is 405 for alpha's manager and the foreign annotator
    alike (refused before any lookup: it tells nothing about the object)."""
    tabled: dict[str, set[str]] = {}
    for row in TABLE:
        # a row's query string (STOW's ?project=) does not make another route
        path = row.path.format(**world.ids).partition("?")[0]
        tabled.setdefault(path, set()).add(row.method)
    manager, foreign = world.client("manager"), world.client("foreign")
    for path, methods in sorted(tabled.items()):
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods):
            for client in (manager, foreign):
                response = getattr(client, method.lower())(path)
                assert response.status_code == 405, (method, path, response.status_code)
