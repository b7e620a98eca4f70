"""The manager pages in a real browser: a manager sets up a project without the Django admin.

Headless Chromium signs in as a manager, creates a project through the New project form (its
field errors first), adds an annotator on the settings page (an unknown username first: the API's
400 shows next to the field), opens round 1, uploads a volume on the import page and reads the
report. The annotator then puts two box prompts on the task over the API (what the viewer does),
and the manager starts the round's batch pre-annotation on the rounds page and watches a separate
Celery worker finish it; last, the task is released and assigned back from the tasks page's side
panel, whose audit trail shows both. Once the task is accepted, the manager trains a model on
rounds 0-1 from the rounds page (a training job the worker runs), makes it the active model in the
models table and opens round 2, which is pre-annotated with it. Screenshots land in
test-artifacts/browser/ (or $BROWSER_ARTIFACTS).
"""

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotator.models import MaskVersion
from inference.engine import Phantom, key_slice_and_box
from projects.models import Membership, Project, Round, Task
from projects.services import PALETTE
from tests.browser.harness import BrowserRunner
from tests.support.api import Api
from tests.support.worker import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SLUG = "liver-trial"


def test_manager_creates_imports_and_preannotates(
    run_browser: BrowserRunner,
    worker: Worker,
    live_server: Any,
    phantom: Phantom,
    phantom_file: Path,
) -> None:
    users = get_user_model().objects
    manager = users.create_user("mgr", password="mgr-pw")
    manager.user_permissions.add(Permission.objects.get(codename="add_project"))
    users.create_user("ann", password="ann-pw")
    params: dict[str, Any] = {"username": "mgr", "password": "mgr-pw", "slug": SLUG}
    params["member"] = "ann"

    record = run_browser(
        "manager_pages.mjs",
        step="setup",
        name="Liver trial",
        classes=["tumour", "cyst"],
        volume=str(phantom_file),
        timeout=180,
        **params,
    )
    setup = record["result"]
    assert len(record["artifacts"]) == 4, record["artifacts"]

    # the form checked itself before sending, and suggested the address from the name
    assert setup["empty_form_errors"] == [
        "Give the project a name.",
        "Give the project a short name for its address.",
        "Add at least one lesion class.",
    ]
    assert setup["slug_suggested"] == SLUG
    assert "created" in setup["flash"]
    # the API's 400 for an unknown user is shown next to the username field
    assert setup["unknown_user_error"] == "no active user 'nobody-by-that-name'"

    project = Project.objects.get(slug=SLUG)
    assert project.name == "Liver trial"
    assert project.description == "Created by the browser test."
    assert project.lesion_classes == [
        {"name": "tumour", "color": PALETTE[0]},
        {"name": "cyst", "color": PALETTE[1]},
    ]
    assert project.window_presets == [{"name": "Liver", "center": 60.0, "width": 160.0}]
    assert (project.assignment, project.ordering) == ("pool", "low_confidence")
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"mgr": "manager", "ann": "annotator"}
    assert setup["members"] == ["ann", "mgr (you)"]

    # round 1 opened from the rounds page; the uploaded volume became its task
    states = dict(Round.objects.filter(project=project).values_list("number", "state"))
    assert states == {0: "closed", 1: "open"}
    assert setup["rounds"][0].startswith("1\tOpen")
    task = Task.objects.get(pk=setup["task"])
    assert (task.round.number, task.state) == (1, "unassigned")
    assert setup["progress_max"] == "100"
    assert f"Imported: task #{task.pk}" in setup["job"]
    assert "1 of 1 file imported" in setup["report"]

    # the annotator claims the task and puts a box on each lesion, as the viewer does
    ann = Api(live_server.url, "ann", "ann-pw")
    assert ann.call("POST", f"/projects/{SLUG}/tasks/next/").json()["id"] == task.pk
    for mask in phantom.lesion_masks:
        key_slice, box = key_slice_and_box(mask)
        prompt = {"lesion_class": "tumour", "key_slice": key_slice, "box": list(box)}
        ann.call("POST", f"/tasks/{task.pk}/lesions/", 201, json=prompt)
    lesions = len(phantom.lesion_masks)

    record = run_browser(
        "manager_pages.mjs", step="preannotate", task=task.pk, timeout=240, **params
    )
    pre = record["result"]
    assert len(record["artifacts"]) == 2, record["artifacts"]
    assert pre["started"] == f"{lesions} jobs queued on the GPU batch queue."
    assert pre["progress"] == f"Finished: all {lesions} lesions pre-annotated"
    assert MaskVersion.objects.filter(lesion__task=task, source="model").count() == lesions
    assert "run_segmentation_job[" in worker.output()

    # released and assigned back from the side panel, both in the audit trail
    assert pre["audit"][:2] == ["Assigned to ann", "Released to the pool (by a manager)"]
    task.refresh_from_db()
    assert (task.state, task.assignee and task.assignee.username) == ("assigned", "ann")
    assert "\tAssigned\tann\t" in pre["row"]

    # the annotator submits the pre-annotated task and the manager accepts it over the API;
    # then, on the rounds page, a model is trained on it, made active, and round 2 opened
    ann.call("POST", f"/tasks/{task.pk}/submit/")
    mgr = Api(live_server.url, "mgr", "mgr-pw")
    mgr.call("POST", f"/tasks/{task.pk}/review/", 201, json={"decision": "accept"})
    record = run_browser("manager_pages.mjs", step="train", timeout=240, **params)
    trained = record["result"]
    assert len(record["artifacts"]) == 2, record["artifacts"]
    # the export as chosen on the page: the accepted task in NIfTI and DICOM SEG, no npz
    with zipfile.ZipFile(trained["export_zip"]) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert [case["task"] for case in manifest["cases"]] == [task.pk]
    assert sorted(manifest["formats"]) == ["dicom-seg", "nifti"]
    case = manifest["cases"][0]["case"]
    assert {f"images/{case}.nii.gz", f"labels/{case}.nii.gz"} <= names
    assert not any(name.startswith(("medsam2/", "nnunet/")) for name in names)
    # an uploaded NIfTI volume's SEG references the DICOM generated for it at import
    assert manifest["skipped"] == []
    assert f"dicom-seg/{case}.dcm" in names
    version = project.model_versions.get()
    assert trained["training"].startswith(f"Trained “{version.name}”"), trained["training"]
    assert version.trained_from_rounds.count() == 2
    assert "run_training_job[" in worker.output()
    # made active from the models table: the badge moved, and round 2 pre-annotates with it
    assert "Make active" in trained["models_before"][0]
    assert "\trounds 0, 1\t" in trained["models_before"][0]
    after = trained["models_after"][0]
    assert "Active" in after and "Make active" not in after
    project.refresh_from_db()
    assert project.active_model_version == version
    assert Round.objects.get(project=project, number=2).model_version == version
    assert trained["rounds"][0].startswith(f"2\tOpen\t{version.name}")
