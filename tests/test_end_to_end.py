"""The whole loop over HTTP, with a separate Celery worker process doing the segmentation.

Runs against whatever DATABASE_URL and CELERY_BROKER_URL say: PostgreSQL and Redis in CI
(.ci/run), SQLite and the filesystem broker on a bare machine.
"""

import gzip
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command

from inference.engine import dice, key_slice_and_box
from tests.support.api import Api
from tests.support.worker import running_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def recent(seconds: int) -> str:
    """An hour ago plus ``seconds``, in ISO 8601 (the effort API takes recent times only)."""
    return (datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def worker(live_server: Any, media_root: Path, tmp_path: Path) -> Iterator[Path]:
    """A real `celery worker` process on the same database, broker and files as the server."""
    with running_worker(media_root=media_root, log=tmp_path / "worker.log") as process:
        yield process.log


def test_import_annotate_review_export(
    worker: Path, live_server: Any, phantom: Any, phantom_file: Path, tmp_path: Path
) -> None:
    users = get_user_model().objects
    manager = users.create_user("mgr", password="mgr-pw")
    manager.user_permissions.add(Permission.objects.get(codename="add_project"))
    users.create_user("ann", password="ann-pw")
    users.create_user("rev", password="rev-pw")
    mgr = Api(live_server.url, "mgr", "mgr-pw")
    ann = Api(live_server.url, "ann", "ann-pw")
    rev = Api(live_server.url, "rev", "rev-pw")

    # the manager creates a project, adds the team and imports a volume
    project = {
        "name": "Liver",
        "slug": "liver",
        "modality": "CT",
        "lesion_classes": [{"name": "tumour"}],
    }
    mgr.call("POST", "/projects/", 201, json=project)
    mgr.call("POST", "/projects/liver/members/", 201, json={"username": "ann", "role": "annotator"})
    mgr.call("POST", "/projects/liver/members/", 201, json={"username": "rev", "role": "reviewer"})
    with open(phantom_file, "rb") as f:
        imported = mgr.call("POST", "/projects/liver/volumes/", 201, files={"file": f}).json()
    tasks = mgr.call("GET", "/projects/liver/tasks/").json()["results"]
    assert [(t["id"], t["state"]) for t in tasks] == [(imported["task"], "unassigned")]

    # the annotator claims it, adds a lesion and draws a box; the worker segments it
    task = ann.call("POST", "/projects/liver/tasks/next/").json()
    assert task["id"] == imported["task"] and task["state"] == "assigned"
    reference = phantom.lesion_masks[0]
    key_slice, box = key_slice_and_box(reference)
    lesion = ann.call(
        "POST", f"/tasks/{task['id']}/lesions/", 201, json={"lesion_class": "tumour"}
    ).json()
    job = ann.call(
        "POST",
        f"/lesions/{lesion['id']}/segment/",
        202,
        json={"key_slice": key_slice, "box": list(box)},
    ).json()
    assert job["state"] == "queued"
    deadline = time.monotonic() + 90
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job stuck:\n{worker.read_text()}"
        time.sleep(0.3)
        job = ann.call("GET", f"/jobs/{job['id']}/").json()
    assert job["state"] == "succeeded", job["error"]
    assert "run_segmentation_job[" in worker.read_text()  # the worker process ran it
    model_version = ann.call("GET", f"/masks/{job['result']}/").json()
    assert model_version["source"] == "model" and model_version["voxel_count"] > 0
    shape = tuple(reversed(imported["size"]))
    raw = ann.call("GET", f"/masks/{job['result']}/data/").content
    model_mask = np.frombuffer(gzip.decompress(raw), np.uint8).reshape(shape).astype(bool)
    assert dice(model_mask, reference) > 0.7

    # the annotator corrects it: the reference on the key slice, saved on top of the model's
    corrected = model_mask.copy()
    corrected[key_slice] = reference[key_slice]
    payload = {"mask": ("mask.gz", gzip.compress(corrected.astype(np.uint8).tobytes()))}
    human = ann.call(
        "POST",
        f"/lesions/{lesion['id']}/masks/",
        201,
        data={"parent": job["result"], "encoding": "raw-gzip"},
        files=payload,
    ).json()
    assert human["source"] == "human" and human["parent"] == job["result"]
    stale = {"parent": job["result"], "encoding": "raw-gzip"}
    ann.call("POST", f"/lesions/{lesion['id']}/masks/", 409, data=stale, files=payload)
    ann.call(
        "POST",
        f"/tasks/{task['id']}/effort/",
        201,
        json={
            "intervals": [{"started_at": recent(0), "ended_at": recent(60)}],
            "interactions": [{"tool": "box", "at": recent(10), "lesion": lesion["id"]}],
        },
    )
    assert ann.call("POST", f"/tasks/{task['id']}/submit/").json()["state"] == "submitted"

    # the reviewer accepts; the export lists the case with the human mask as final
    rev.call("POST", f"/tasks/{task['id']}/review/", 201, json={"decision": "accept"})
    assert rev.call("GET", f"/tasks/{task['id']}/").json()["state"] == "accepted"
    export = mgr.call("GET", "/projects/liver/rounds/0/export/").json()
    [case] = export["cases"]
    assert case["task"] == task["id"] and case["annotator"] == "ann" and case["reviewer"] == "rev"
    [exported_lesion] = case["lesions"]
    assert exported_lesion["final_mask_version"] == human["id"]
    assert exported_lesion["model_mask_version"] == job["result"]

    out = tmp_path / "export"
    call_command("export_round", "liver", "0", "--out", str(out), stdout=io.StringIO())
    labels = sitk.ReadImage(str(out / "labels" / f"{case['case']}.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels) == 1, corrected)
    image = sitk.ReadImage(str(out / "images" / f"{case['case']}.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), phantom.image)
