"""Versioned masks: append-only history, 409 on a stale parent, byte-exact round trips."""

import gzip
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from rest_framework.test import APIClient

from annotator.annotation.masks import encode_raw_gzip
from annotator.models import MaskVersion

pytestmark = pytest.mark.django_db


def upload(client: APIClient, lesion_id: int, mask: np.ndarray, parent: int | None) -> Any:
    payload = io.BytesIO(encode_raw_gzip(mask))
    payload.name = "mask.raw.gz"
    data: dict[str, Any] = {"mask": payload, "encoding": "raw-gzip"}
    if parent is not None:
        data["parent"] = parent
    else:
        data["parent"] = ""
    return client.post(f"/api/lesions/{lesion_id}/masks/", data, format="multipart")


def test_save_chain_and_conflict(lesion: dict[str, Any], phantom: Any) -> None:
    client, lesion_id = lesion["client"], lesion["id"]
    first = phantom.lesion_masks[0]
    v1 = upload(client, lesion_id, first, None)
    assert v1.status_code == 201, v1.content
    assert v1.json()["voxel_count"] == int(first.sum()) and v1.json()["source"] == "human"

    second = first.copy()
    second[second.shape[0] // 2, :5, :5] = True
    v2 = upload(client, lesion_id, second, v1.json()["id"])
    assert v2.status_code == 201 and v2.json()["parent"] == v1.json()["id"]

    # a second editor who started from v1 is refused and nothing is written
    files_before = MaskVersion.objects.count()
    stale = upload(client, lesion_id, first, v1.json()["id"])
    assert stale.status_code == 409
    assert "changed meanwhile" in stale.json()["detail"]
    assert MaskVersion.objects.count() == files_before
    # so is a "first" save once a version exists
    assert upload(client, lesion_id, first, None).status_code == 409

    data = client.get(f"/api/masks/{v2.json()['id']}/data/")
    assert data["X-Mask-Shape"] == ",".join(map(str, lesion["shape"]))
    raw = np.frombuffer(gzip.decompress(data.content), dtype=np.uint8).reshape(lesion["shape"])
    np.testing.assert_array_equal(raw.astype(bool), second)
    history = client.get(f"/api/lesions/{lesion_id}/masks/").json()
    assert [v["id"] for v in history] == [v1.json()["id"], v2.json()["id"]]
    latest = client.get(f"/api/lesions/{lesion_id}/").json()["latest_mask"]
    assert latest["id"] == v2.json()["id"]


def test_nifti_download_carries_the_volume_geometry(
    lesion: dict[str, Any], phantom: Any, workspace: dict[str, Any], tmp_path: Any
) -> None:
    client = lesion["client"]
    version = upload(client, lesion["id"], phantom.lesion_masks[1], None).json()
    response = client.get(f"/api/masks/{version['id']}/data/?encoding=nifti")
    assert response.status_code == 200
    path = tmp_path / "mask.nii.gz"
    path.write_bytes(response.content)
    image = sitk.ReadImage(str(path))
    volume = workspace["imported"].volume
    assert list(image.GetSize()) == volume.size
    np.testing.assert_allclose(image.GetSpacing(), volume.spacing)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image) > 0, phantom.lesion_masks[1])


def test_image_encoding_upload_is_checked_against_the_grid(
    lesion: dict[str, Any], phantom: Any, tmp_path: Any
) -> None:
    client = lesion["client"]
    good = sitk.GetImageFromArray(phantom.lesion_masks[0].astype(np.uint8))
    good.SetSpacing(phantom.spacing)
    good.SetOrigin(phantom.origin)
    sitk.WriteImage(good, str(tmp_path / "good.nii.gz"))
    with open(tmp_path / "good.nii.gz", "rb") as f:
        response = client.post(
            f"/api/lesions/{lesion['id']}/masks/",
            {"mask": f, "encoding": "image", "parent": ""},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    assert response.json()["voxel_count"] == int(phantom.lesion_masks[0].sum())

    small = sitk.GetImageFromArray(np.zeros((3, 4, 5), dtype=np.uint8))
    sitk.WriteImage(small, str(tmp_path / "small.nii.gz"))
    with open(tmp_path / "small.nii.gz", "rb") as f:
        response = client.post(
            f"/api/lesions/{lesion['id']}/masks/",
            {"mask": f, "encoding": "image", "parent": response.json()["id"]},
            format="multipart",
        )
    assert response.status_code == 400 and "size" in response.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not gzip at all", "not valid gzip"),
        (gzip.compress(b"\x01" * 10), "exactly"),
        (gzip.compress(b"\x01" * 10_000_000), "exactly"),
    ],
)
def test_bad_mask_payloads_are_400_and_write_nothing(
    lesion: dict[str, Any], payload: bytes, message: str, media_root: Any
) -> None:
    file = io.BytesIO(payload)
    file.name = "mask.raw.gz"
    response = lesion["client"].post(
        f"/api/lesions/{lesion['id']}/masks/",
        {"mask": file, "parent": ""},
        format="multipart",
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert MaskVersion.objects.count() == 0
    assert not list(media_root.rglob("*.npy.gz"))


def test_effort_records(lesion: dict[str, Any], workspace: dict[str, Any]) -> None:
    client = lesion["client"]
    task_id = workspace["imported"].task.pk
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # recent, as the API asks

    def at(seconds: int) -> str:
        return (start + timedelta(seconds=seconds)).isoformat()

    body = {
        "intervals": [
            {"started_at": at(0), "ended_at": at(42)},
            {"started_at": at(60), "ended_at": at(70), "lesion": lesion["id"]},
        ],
        "interactions": [
            {"tool": "box", "at": at(5), "lesion": lesion["id"]},
            {"tool": "brush", "at": at(9), "slice_index": 4},
        ],
    }
    assert client.post(f"/api/tasks/{task_id}/effort/", body, format="json").status_code == 201
    task = workspace["imported"].task
    assert sum(i.seconds for i in task.intervals.all()) == 52
    assert sorted(task.interactions.values_list("tool", flat=True)) == ["box", "brush"]
    backwards = {"intervals": [{"started_at": at(0), "ended_at": at(-3600)}]}
    assert client.post(f"/api/tasks/{task_id}/effort/", backwards, format="json").status_code == 400
    bad_tool = {"interactions": [{"tool": "lasso", "at": at(5)}]}
    assert client.post(f"/api/tasks/{task_id}/effort/", bad_tool, format="json").status_code == 400
