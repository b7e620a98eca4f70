"""The task workspace (Cornerstone3D viewer) in a real browser, on a real imported CT series.

A manager imports a real DICOM CT series (the soft-tissue sarcoma STS_001 CT, 59 slices, from
../shared/data; skipped where that is absent) into a project with window presets; an annotator
claims the task, adds a lesion and saves a first mask through the API. Headless Chromium then
opens ``#/tasks/<id>/workspace`` and waits for ``window.__workspace.ready``. The test checks that
the saved mask came back into the labelmap voxel for voxel, that the three views show
non-uniform pixels, that a brush stroke and a single press made with real mouse events grow the
labelmap (the press before the button is released), that the eraser shrinks it, and keeps the
screenshots (test-artifacts/browser/ or $BROWSER_ARTIFACTS).
"""

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser.harness import BrowserRunner
from tests.support.api import project_with_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SERIES = (
    Path(__file__).resolve().parents[2].parent
    / "shared/data/mirp/sts_images/STS_001/CT/dicom/image"
)
PRESETS = [
    {"name": "Soft tissue", "center": 40, "width": 400},
    {"name": "Bone", "center": 500, "width": 2000},
]


def imported_task(live_server: Any) -> dict[str, Any]:
    """Imports SERIES, claims its task as the annotator and saves a box mask on one lesion."""
    project = {
        "name": "Workspace",
        "slug": "ws",
        "modality": "CT",
        "lesion_classes": [{"name": "tumour"}],
        "window_presets": PRESETS,
    }
    api = project_with_team(live_server.url, project, ann="annotator")
    mgr, ann = api["mgr"], api["ann"]
    files = sorted(SERIES.glob("*.dcm"))
    handles = [("files", (f.name, f.read_bytes(), "application/dicom")) for f in files]
    report = mgr.call("POST", "/projects/ws/imports/", 201, files=handles).json()
    (series,) = report["series"]
    assert series["status"] == "imported", series
    x, y, z = series["size"]

    task = ann.call("POST", "/projects/ws/tasks/next/").json()
    assert task["assignee"] == "ann", task
    lesion = ann.call(
        "POST",
        f"/tasks/{task['id']}/lesions/",
        201,
        json={"lesion_class": "tumour", "key_slice": z // 2},
    ).json()
    mask = np.zeros((z, y, x), dtype=np.uint8)
    mask[z // 2 - 1 : z // 2 + 2, y // 4 : y // 4 + 20, x // 4 : x // 4 + 30] = 1
    body = gzip.compress(mask.tobytes())
    ann.call(
        "POST",
        f"/lesions/{lesion['id']}/masks/",
        201,
        data={"parent": "", "encoding": "raw-gzip"},
        files={"mask": ("mask.gz", body)},
    )
    return {"task": task["id"], "size": (x, y, z), "mask_voxels": int(mask.sum())}


@pytest.mark.skipif(not SERIES.is_dir(), reason="../shared/data is not available")
def test_workspace_renders_and_brushes(run_browser: BrowserRunner, live_server: Any) -> None:
    setup = imported_task(live_server)
    x, y, z = setup["size"]
    record = run_browser(
        "workspace_view.mjs",
        username="ann",
        password="ann-pw",
        task_id=setup["task"],
        centre_voxel=[x // 2, y // 2, z // 2],
        timeout=240,
    )
    result = record["result"]

    # the key slice was on screen, a real CT slice, before the viewer's chunk had loaded
    key_slice = result["keySlice"]
    assert key_slice is not None and key_slice["distinct"] > 32, key_slice
    assert not key_slice["viewsShown"]
    assert result["viewports"] == ["axial", "sagittal", "coronal"]
    timings = result["timings"]
    assert 0 < timings["firstSliceMs"] <= timings["interactiveMs"], timings
    for viewport, stats in result["stats"].items():
        # a real CT slice: many grey levels, neither blank nor a flat "not loaded" grey
        assert stats["distinct"] > 32, (viewport, stats)
        assert 5 < stats["mean"] < 250, (viewport, stats)

    assert abs(result["afterWindowLevel"]["mean"] - result["stats"]["coronal"]["mean"]) > 1
    assert result["afterScroll"]["mean"] != result["stats"]["sagittal"]["mean"]

    voxels = result["voxels"]
    assert voxels["loaded"] == setup["mask_voxels"], voxels  # the saved mask, voxel for voxel
    assert voxels["loadedSegment1"] == setup["mask_voxels"], voxels
    assert voxels["afterBrush"] > voxels["loaded"] + 50, voxels
    assert voxels["duringPress"] > voxels["afterBrush"], voxels  # painted before mouse-up
    # a held stroke is on screen before the release, in the colour the view's repaint gives it
    for viewport, pixel in result["held"].items():
        before, during, after = (np.array(pixel[key][:3]) for key in ("before", "during", "after"))
        assert np.abs(during - before).max() > 30, (viewport, pixel)
        assert np.abs(after - during).max() <= 24, (viewport, pixel)
        assert pixel["overlayDraws"] > 0, (viewport, pixel)  # drawn by the overlay, not WebGL
    erased = np.array(result["held"]["axialErased"]["during"][:3])
    assert erased.max() - erased.min() <= 8, result["held"]  # grey again: the label is gone
    assert voxels["afterErase"] < voxels["afterClick"], voxels
    assert voxels["afterErase"] >= 0

    # the views end inside the window, and follow a resize (canvas pixels = its CSS box)
    fit = result["fit"]
    for state in (fit["before"], fit["resized"]):
        assert state["gridBottom"] <= state["windowHeight"], state
        assert state["canvas"] == state["cssBox"], state
    assert fit["resized"]["canvas"][1] < fit["before"]["canvas"][1] - 100, fit
    assert fit["resizedAxial"]["distinct"] > 32, fit["resizedAxial"]

    box = result["axialBox"]
    px, py = result["centre"]
    assert box["x"] < px < box["x"] + box["width"] and box["y"] < py < box["y"] + box["height"]
    assert result["brushLatenciesMs"], "no brush latency was measured"
    assert all(0 < ms < 30000 for ms in result["brushLatenciesMs"]), result["brushLatenciesMs"]
    assert {Path(p).name for p in record["artifacts"]} >= {
        "workspace-ready.png",
        "workspace-brushed.png",
        "workspace-erased.png",
    }
