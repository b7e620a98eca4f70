"""The annotation loop in a real browser with a real Celery worker, on a real imported CT series.

The annotator claims the next task on the project's queue page, which opens its workspace, adds a
lesion and drags a box on the axial view: the worker (default CPU segmentation backend) segments
it and the mask shows up in the labelmap. A brush stroke adds voxels, the eraser removes some,
Ctrl+Z brings them back (exactly), redo and the Undo button agree; the autosave completes, and a
reload shows the same voxels. The annotator submits; the reviewer (a fresh session) opens the
task read-only and rejects it with a comment; the task is back in the annotator's queue, and its
workspace, opened from there, shows the comment. Every number is read from the page
(window.__workspace) and checked against the API and the database. Screenshots of each step are
kept by the harness.
Skipped where ../shared/data (the STS_001 CT, as in test_workspace_view.py) is absent.
"""

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotator.models import Interaction
from inference.models import InferenceJob
from tests.browser.harness import BrowserRunner
from tests.browser.test_workspace_view import PRESETS, SERIES
from tests.support.api import Api
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def negative_point(x: int, y: int, z: int) -> list[int]:
    """Inside the box, off its centre: the Shift+click of the point tool."""
    return [x // 2 + 25, y // 2 + 25, z // 2]


COMMENT = "Lesion border too generous on the box slice: tighten it."


def setup_project(live_server: Any) -> tuple[dict[str, Api], tuple[int, int, int]]:
    users = get_user_model().objects
    manager = users.create_user("mgr", password="mgr-pw")
    manager.user_permissions.add(Permission.objects.get(codename="add_project"))
    users.create_user("ann", password="ann-pw")
    users.create_user("rev", password="rev-pw")
    api = {name: Api(live_server.url, name, f"{name}-pw") for name in ("mgr", "ann", "rev")}
    project = {
        "name": "Loop",
        "slug": "loop",
        "modality": "CT",
        "lesion_classes": [{"name": "tumour", "color": "#e6194b"}, {"name": "node"}],
        "window_presets": PRESETS,
    }
    api["mgr"].call("POST", "/projects/", 201, json=project)
    for name, role in (("ann", "annotator"), ("rev", "reviewer")):
        member = {"username": name, "role": role}
        api["mgr"].call("POST", "/projects/loop/members/", 201, json=member)
    files = sorted(SERIES.glob("*.dcm"))
    handles = [("files", (f.name, f.read_bytes(), "application/dicom")) for f in files]
    report = api["mgr"].call("POST", "/projects/loop/imports/", 201, files=handles).json()
    (series,) = report["series"]
    assert series["status"] == "imported", series
    x, y, z = series["size"]
    return api, (x, y, z)


@pytest.mark.skipif(not SERIES.is_dir(), reason="../shared/data is not available")
def test_annotation_loop(run_browser: BrowserRunner, live_server: Any, worker: Worker) -> None:
    api, (x, y, z) = setup_project(live_server)
    box = [x // 2 - 40, y // 2 - 40, x // 2 + 40, y // 2 + 40]
    record = run_browser(
        "annotation_loop.mjs",
        slug="loop",
        annotator=["ann", "ann-pw"],
        reviewer=["rev", "rev-pw"],
        size=[x, y, z],
        box=box,
        brush_at=[x // 4, y // 4, z // 2],
        negative_point=negative_point(x, y, z),
        lesion_class="node",
        comment=COMMENT,
        timeout=420,
    )
    r = record["result"]
    task_id = r["taskId"]
    lesion_id = r["lesion"]["id"]

    # the lesion: added from the page, selected, segment 1, empty
    assert r["lesion"] == {
        "id": lesion_id,
        "segment": 1,
        "voxels": 0,
        "lesionClass": "node",
        "visible": True,
    }
    assert r["selected"] == lesion_id

    # the box -> the worker's mask, shown in the page and saved as a model version
    assert "Box" in r["progressText"], r["progressText"]
    assert r["preseg"] > 0, r
    assert r["presegLesions"][0]["voxels"] == r["preseg"]
    assert r["afterSegSave"] == "saved"
    versions = api["ann"].call("GET", f"/lesions/{lesion_id}/masks/").json()
    model = sorted((v for v in versions if v["source"] == "model"), key=lambda v: v["id"])
    # box, box + negative point, propagate: three model versions, each shown in the page
    assert [v["voxel_count"] for v in model] == [
        r["preseg"],
        r["negative"]["voxels"],
        r["propagated"]["voxels"],
    ], (versions, r)
    assert f"{r['negative']['voxels']} voxels" in r["negative"]["text"]
    assert r["negative"]["text"].startswith("Negative point: done")
    assert r["propagated"]["text"].startswith("Propagate: done")
    assert r["negative"]["saved"] == r["propagated"]["saved"] == "saved"
    jobs = [
        job.prompt
        for job in InferenceJob.objects.filter(lesion_id=lesion_id).order_by("id")
        if job.state == "succeeded"
    ]
    assert len(jobs) == 3, jobs
    assert jobs[0]["key_slice"] == z // 2 and "negative_points" not in jobs[0], jobs
    assert jobs[1]["box"] == jobs[0]["box"], jobs
    (point,) = jobs[1]["negative_points"]
    assert all(abs(a - b) <= 1 for a, b in zip(point, negative_point(x, y, z), strict=True)), jobs
    assert jobs[2]["mask_slice"] == z // 2, jobs
    # hide / show: display only
    assert r["hidden"][0]["visible"] is False and r["shown"][0]["visible"] is True
    assert r["hidden"][0]["voxels"] == r["shown"][0]["voxels"] == r["propagated"]["voxels"]
    assert f"{r['preseg']} voxels" in r["segmentText"]
    assert "run_segmentation_job[" in worker.output()
    lesion = api["ann"].call("GET", f"/lesions/{lesion_id}/").json()
    assert lesion["key_slice"] == z // 2, lesion
    assert lesion["box"] is not None
    # the box the annotator drew, within a voxel (page pixels -> voxels round-trip)
    assert all(abs(a - b) <= 1 for a, b in zip(jobs[0]["box"], box, strict=True)), jobs[0]

    # brush adds, eraser removes, undo restores exactly, redo / undo agree
    assert r["afterBrush"] > r["propagated"]["voxels"], r
    assert r["afterErase"] < r["afterBrush"], r
    assert r["afterUndo"] == r["afterBrush"], r
    assert r["afterRedo"] == r["afterErase"], r
    assert r["afterUndoButton"] == r["afterBrush"], r
    assert r["afterRedoButton"] == r["afterErase"], r
    assert r["afterUndo2"] == r["afterBrush"], r

    # autosave -> reload shows the same voxels; the server's latest version agrees
    assert r["saveState"] == "saved"
    assert "All changes saved" in r["saveLabel"]
    final = r["final"][0]["voxels"]
    assert final == r["afterBrush"]
    assert r["reloaded"][0]["id"] == lesion_id
    assert r["reloaded"][0]["voxels"] == final
    assert r["reloadedTotal"] == final
    versions = api["ann"].call("GET", f"/lesions/{lesion_id}/masks/").json()
    latest = max(versions, key=lambda v: v["id"])
    assert latest["source"] == "human" and latest["voxel_count"] == final, versions
    data = api["ann"].call("GET", f"/masks/{latest['id']}/data/").content
    mask = np.frombuffer(gzip.decompress(data), dtype=np.uint8)
    assert int(np.count_nonzero(mask)) == final

    # the help lists the workspace's own keys
    assert "Undo" in r["help"] and "Redo" in r["help"] and "New lesion" in r["help"], r["help"]

    # submit
    assert r["submitState"] == "submitted", r["submitText"]

    # the reviewer: read-only, the same voxels, an empty rejection refused, then rejected
    assert r["reviewerLesions"][0]["voxels"] == final
    assert r["reviewerBrushDisabled"] is True
    # model vs final: the last model version (propagate), then the submitted mask
    assert r["reviewerModel"][0]["voxels"] == model[-1]["voxel_count"] != final, r
    assert r["reviewerModelInfo"] == "Model masks of 1 of 1 lesions"
    # the difference view: what the annotator added to and removed from the model's mask
    d = r["reviewerDifference"]
    assert d["agree"] + d["removed"] == model[-1]["voxel_count"], d
    assert d["agree"] + d["added"] == final, d
    assert d["added"] + d["removed"] > 0 and d["agree"] > 0, d
    assert d["shown"] == {"agree": d["agree"], "added": d["added"], "removed": d["removed"]}, d
    dice = 2 * d["agree"] / (2 * d["agree"] + d["added"] + d["removed"])
    assert f"Dice model vs submitted {dice:.3f}" in d["text"], d
    assert r["reviewerFinal"][0]["voxels"] == final
    assert r["reviewerHasSubmit"] is False
    assert "needs a comment" in r["emptyRejectText"]
    assert r["reviewState"] == "reject"
    reviews = api["ann"].call("GET", f"/tasks/{task_id}/review/").json()
    reviews = reviews["results"] if isinstance(reviews, dict) else reviews
    assert [(v["decision"], v["comment"], v["reviewer"]) for v in reviews] == [
        ("reject", COMMENT, "rev")
    ]

    # the annotator sees the comment, can edit again, and the task is in their queue
    assert r["annotatorComment"] == COMMENT
    assert "Rejected by rev" in r["annotatorNote"]
    assert r["reopenedLesions"][0]["voxels"] == final
    assert r["reopenedEditable"] is True
    assert COMMENT in r["queueNote"]
    task = api["ann"].call("GET", f"/tasks/{task_id}/").json()
    assert (task["state"], task["assignee"], task["reviewer"]) == ("rejected", "ann", "rev")
    assert task["last_review"]["comment"] == COMMENT
    mine = api["ann"].call("GET", "/projects/loop/tasks/?mine=1").json()
    mine = mine["results"] if isinstance(mine, dict) else mine
    assert [t["id"] for t in mine] == [task_id]

    # effort: the page's interactions reached the server
    tools = list(Interaction.objects.filter(task_id=task_id).values_list("tool", flat=True))
    assert tools.count("box") == 1, tools
    assert tools.count("point-") == 1 and tools.count("propagate") == 1, tools
    assert tools.count("brush") == 1, tools
    assert tools.count("eraser") == 1, tools
    assert tools.count("undo") == 3 and tools.count("redo") == 2, tools

    names = {Path(p).name for p in record["artifacts"]}
    assert {"04-presegmented.png", "07-undone.png", "15-annotator-sees-comment.png"} <= names
