"""The task workspace (Cornerstone3D viewer) in a real browser, on a real imported CT series.

A manager imports a real DICOM CT series (the soft-tissue sarcoma STS_001 CT, 59 slices, from
../shared/data; skipped where that is absent) into a project with window presets; an annotator
claims the task, adds a lesion and saves a first mask through the API. Headless Chromium then
opens ``#/tasks/<id>/workspace`` and waits for ``window.__workspace.ready``. The test checks that
the saved mask came back into the labelmap voxel for voxel, that the three views show
non-uniform pixels, that a brush stroke and a single press made with real mouse events grow the
labelmap (the press before the button is released), that the eraser shrinks it, and keeps the
screenshots (test-artifacts/browser/ or $BROWSER_ARTIFACTS).

Each view's overlay shows its slice out of the total, the window / level (following a drag of
the window / level tool), orientation letters on the right edges and the lesion's marked slice
range, without taking pointer events. The slice range is marked with I and O while scrolling the
axial view; the next box prompts carry it as ``z_range`` (one box inside it; one outside, which
widens it and says so) and the server records it on the jobs; X clears it.
"""

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.models import InferenceJob
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
        "workspace-range-marked.png",
        "workspace-range-widened.png",
    }
    check_overlays(result, (x, y, z))
    check_slice_range(result["range"], z)


# Cornerstone's orientation presets on an axial CT (patient coordinates): the patient's right
# on the screen's left in the axial and coronal views, anterior on the left in the sagittal
EDGES = {
    "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
    "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
    "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
}


def inside(part: dict[str, float], cell: dict[str, float]) -> bool:
    return (
        part["x"] >= cell["x"]
        and part["y"] >= cell["y"]
        and part["right"] <= cell["right"]
        and part["bottom"] <= cell["bottom"]
    )


def apart(parts: list[dict[str, float]]) -> bool:
    """No two of an overlay's texts overlap (each stays legible)."""
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            if (
                a["x"] < b["right"]
                and b["x"] < a["right"]
                and a["y"] < b["bottom"]
                and b["y"] < a["bottom"]
            ):
                return False
    return True


def check_overlays(result: dict[str, Any], size: tuple[int, int, int]) -> None:
    """Slice / total, window / level, orientation letters at the right edges, inside the views."""
    x, y, z = size
    totals = {"axial": z, "sagittal": x, "coronal": y}
    for view, overlay in result["overlays"]["ready"].items():
        assert overlay["slice"] == f"Slice {overlay['sliceIndex'] + 1} / {totals[view]}", overlay
        assert overlay["windowLevel"] == "W 400 L 40", overlay  # the project's first preset
        assert overlay["range"] == "" and overlay["mark"] == "", overlay  # nothing marked yet
        assert overlay["edges"] == EDGES[view], overlay
        assert overlay["hook"]["slice"] == overlay["slice"], overlay
        assert overlay["hook"]["edges"] == EDGES[view], overlay
        assert overlay["pointerEvents"] == "none" and not overlay["hitInOverlay"], overlay
        cell, edges = overlay["cell"], overlay["edgeBoxes"]
        mid_x, mid_y = cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2
        assert edges["left"]["x"] - cell["x"] < 16, overlay
        assert cell["right"] - edges["right"]["right"] < 16, overlay
        assert edges["top"]["y"] - cell["y"] < 16, overlay
        assert cell["bottom"] - edges["bottom"]["bottom"] < 16, overlay
        for side in ("left", "right"):
            box = edges[side]
            assert abs(box["y"] + box["height"] / 2 - mid_y) < 4, (side, overlay)
        for side in ("top", "bottom"):
            box = edges[side]
            assert abs(box["x"] + box["width"] / 2 - mid_x) < 4, (side, overlay)
        assert len(overlay["parts"]) >= 6, overlay
        for part in overlay["parts"]:
            assert inside(part, cell), (view, part, cell)
        assert apart(overlay["parts"]) and not overlay["clipped"], (view, overlay["parts"])
    assert result["overlays"]["ready"]["axial"]["sliceIndex"] == z // 2  # the key slice
    # the window / level drag on the coronal view: its overlay follows, the others keep theirs
    after = result["overlays"]["afterWindowLevel"]
    assert after["coronal"]["windowLevel"] != "W 400 L 40", after["coronal"]
    assert after["coronal"]["windowLevel"].startswith("W "), after["coronal"]
    assert after["axial"]["windowLevel"] == "W 400 L 40", after["axial"]


def check_slice_range(rng: dict[str, Any], depth: int) -> None:
    """I and O mark the range, the overlays show it, the requests and jobs carry it, X clears."""
    first, last = rng["firstSlice"], rng["lastSlice"]
    assert first != last and first != rng["start"], rng
    z0, z1 = sorted((first, last))
    shown = f"Range {z0 + 1}-{z1 + 1}"
    assert rng["atFirst"]["mark"] == "First slice" and rng["atFirst"]["dataMark"] == "first", rng
    assert rng["atFirst"]["range"] == f"Range {first + 1}-?", rng["atFirst"]
    assert rng["panelPartial"] == f"{first + 1}-?", rng["panelPartial"]
    assert rng["marks"] == {"first": first, "last": last}, rng["marks"]
    assert rng["panel"] == f"{z0 + 1}-{z1 + 1}", rng["panel"]
    at_last = rng["atLast"]
    assert at_last["axial"]["mark"] == "Last slice", at_last["axial"]
    assert at_last["axial"]["slice"] == f"Slice {last + 1} / {depth}", at_last["axial"]
    for view in ("axial", "sagittal", "coronal"):
        assert at_last[view]["range"] == shown, (view, at_last[view])
        for part in at_last[view]["parts"]:
            assert inside(part, at_last[view]["cell"]), (view, part)
        assert apart(at_last[view]["parts"]), (view, at_last[view]["parts"])
        assert not at_last[view]["clipped"], (view, at_last[view])
    for state in (rng["inside"], rng["afterWiden"]["axial"]):
        assert apart(state["parts"]) and not state["clipped"], state
    # the range's ends as lines across the sagittal and coronal views
    for view in ("sagittal", "coronal"):
        lines = {line["end"]: line for line in at_last[view]["lines"]}
        assert set(lines) == {"first", "last"}, (view, at_last[view]["lines"])
        cell = at_last[view]["cell"]
        for line in lines.values():
            assert abs(line["y1"] - line["y2"]) < 1, (view, line)  # across the slices
            assert 0 < line["y1"] < cell["height"], (view, line, cell)
        assert abs(lines["first"]["y1"] - lines["last"]["y1"]) > 5, (view, lines)
    assert not at_last["axial"]["lines"], at_last["axial"]
    assert z0 < rng["insideSlice"] < z1, rng
    assert rng["inside"]["mark"] == "In range", rng["inside"]
    assert rng["inside"]["dataMark"] == "inside", rng["inside"]
    assert not z0 <= rng["outsideSlice"] <= z1, rng
    assert rng["outside"]["dataMark"] == "outside", rng["outside"]
    assert any("Mark this axial slice as the lesion's first" in row for row in rng["helpRows"])
    assert any(row.startswith("X") and "Clear" in row for row in rng["helpRows"]), rng["helpRows"]

    # the box inside the range sends it as it is; the one outside widens it, and says so
    inside_k, outside_k = rng["boxInsideSlice"], rng["boxOutsideSlice"]
    assert z0 <= inside_k <= z1 and not z0 <= outside_k <= z1, rng
    assert rng["boxInside"]["state"] == "done", rng["boxInside"]
    assert rng["boxInside"]["note"] is None, rng["boxInside"]
    assert rng["boxOutside"]["state"] == "done", rng["boxOutside"]
    w0, w1 = min(z0, outside_k), max(z1, outside_k)
    assert rng["boxOutside"]["note"] == (
        f"The slice range {z0 + 1}-{z1 + 1} was widened to {w0 + 1}-{w1 + 1} to include the key "
        f"slice (slice {outside_k + 1})."
    ), rng["boxOutside"]
    requests = rng["requests"]
    assert [r["key_slice"] for r in requests] == [inside_k, outside_k], requests
    assert [r["z_range"] for r in requests] == [[z0, z1], [w0, w1]], requests
    assert rng["afterWiden"]["axial"]["range"] == f"Range {w0 + 1}-{w1 + 1}", rng["afterWiden"]
    assert sorted(rng["marksAfterWiden"].values()) == [w0, w1], rng["marksAfterWiden"]
    # the server took them: the jobs record the range they were asked for
    jobs = list(InferenceJob.objects.order_by("id"))
    assert [job.prompt.get("z_range") for job in jobs] == [[z0, z1], [w0, w1]], [
        job.prompt for job in jobs
    ]

    # X clears it
    assert rng["marksCleared"] == {"first": None, "last": None}, rng
    assert rng["cleared"]["range"] == "" and rng["cleared"]["mark"] == "", rng["cleared"]
    assert rng["panelCleared"].startswith("not marked"), rng["panelCleared"]
