"""An ultrasound cine in the workspace: pydicom-data's 120-frame colour ultrasound clip (one
multi-frame JPEG instance, no slice positions) imported through the API and opened by an
annotator in headless Chromium, with a real Celery worker for the propagation.

The frames load in one DICOMweb request and become a volume of frames (decoded by the server,
shown as luminance like the server's own volume), shown in one view; the test plays and pauses
the cine, paints a mask on the first frame with the real mouse (saved: every voxel on frame 1),
then propagates it forward through the frames (a model mask reaching later frames).
"""

import gzip
from typing import Any

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from tests.browser.harness import BrowserRunner
from tests.support.api import Api, project_with_team
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIP = get_testdata_file("color3d_jpeg_baseline.dcm")


def mask_zyx(api: Api, mask_id: int) -> np.ndarray:
    response = api.call("GET", f"/masks/{mask_id}/data/")
    shape = tuple(int(n) for n in response.headers["X-Mask-Shape"].split(","))
    return np.frombuffer(gzip.decompress(response.content), dtype=np.uint8).reshape(shape)


@pytest.mark.skipif(CLIP is None, reason="pydicom-data is not installed")
def test_cine_mask_on_the_first_frame_propagates_forward(
    run_browser: BrowserRunner, live_server: Any, worker: Worker
) -> None:
    project = {
        "name": "Cine",
        "slug": "cine",
        "modality": "US",
        "lesion_classes": [{"name": "mass"}],
    }
    api = project_with_team(live_server.url, project, ann="annotator")
    mgr, ann = api["mgr"], api["ann"]
    with open(str(CLIP), "rb") as f:
        files = [("files", ("clip.dcm", f.read(), "application/dicom"))]
    report = mgr.call("POST", "/projects/cine/imports/", 201, files=files).json()
    (series,) = report["series"]
    assert series["status"] == "imported", series
    x, y, frames = series["size"]
    assert frames == 120
    task = ann.call("POST", "/projects/cine/tasks/next/").json()
    lesion = ann.call(
        "POST", f"/tasks/{task['id']}/lesions/", 201, json={"lesion_class": "mass", "key_slice": 0}
    ).json()

    record = run_browser(
        "workspace_cine.mjs",
        username="ann",
        password="ann-pw",
        task_id=task["id"],
        frames=frames,
        centre=[x // 2, y // 2],
        timeout=300,
    )
    r = record["result"]
    # one view of the frames, showing the clip (not a blank or flat canvas)
    assert r["viewports"] == ["axial"] and r["label"] == "Frames · 120", r
    assert r["layoutHidden"] is True
    assert r["view"]["distinct"] > 32 and 5 < r["view"]["mean"] < 250, r["view"]
    assert r["firstFrame"] == 0
    # cine: frames move on while playing, stay when paused
    assert r["framesSeenPlaying"] >= 3, r
    assert r["pausedStill"] is True and r["cineButton"] == "Play"
    # the brush mask is on the first frame only, and saved so
    assert r["brushFrame"] == 0
    (painted,) = r["afterBrush"]
    assert painted["id"] == lesion["id"] and painted["voxels"] > 100, painted
    versions = ann.call("GET", f"/lesions/{lesion['id']}/masks/").json()
    versions = versions["results"] if isinstance(versions, dict) else versions
    human = max((v for v in versions if v["source"] == "human"), key=lambda v: v["id"])
    saved = mask_zyx(ann, human["id"])
    assert saved.shape == (frames, y, x)
    per_frame = saved.reshape(frames, -1).sum(axis=1)
    assert per_frame[0] == painted["voxels"] and per_frame[1:].sum() == 0, np.flatnonzero(per_frame)
    # propagated forward: a model mask reaching beyond the first frame, shown in the page
    assert r["propagateState"] == "done", r["propagateText"]
    versions = ann.call("GET", f"/lesions/{lesion['id']}/masks/").json()
    versions = versions["results"] if isinstance(versions, dict) else versions
    model = max((v for v in versions if v["source"] == "model"), key=lambda v: v["id"])
    propagated = mask_zyx(ann, model["id"]).reshape(frames, -1).sum(axis=1)
    reached = np.flatnonzero(propagated)
    assert reached.size > 1 and reached.max() > 0, propagated[:10]
    (shown,) = r["afterPropagate"]
    assert shown["voxels"] == int(propagated.sum()), (shown, int(propagated.sum()))
