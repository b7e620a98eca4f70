"""Volume upload: the original kept byte for byte, geometry recorded, nothing half-imported."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from annotator.models import Series, Study, Volume
from projects.models import Task

pytestmark = pytest.mark.django_db


def post_file(client: APIClient, slug: str, name: str, content: bytes) -> Any:
    file = io.BytesIO(content)
    file.name = name
    return client.post(f"/api/projects/{slug}/volumes/", {"file": file}, format="multipart")


@pytest.fixture
def manager_client(workspace: dict[str, Any], client_for: Callable[[Any], APIClient]) -> APIClient:
    return client_for(workspace["manager"])


def test_upload_creates_series_volume_and_task(
    manager_client: APIClient, workspace: dict[str, Any], phantom_file: Path, phantom: Any
) -> None:
    content = phantom_file.read_bytes()
    response = post_file(manager_client, "alpha", "case 01.nii.gz", content)
    assert response.status_code == 201, response.content
    body = response.json()
    volume = Volume.objects.get(pk=body["volume"])
    assert volume.shape_zyx == phantom.image.shape
    np.testing.assert_allclose(volume.spacing, phantom.spacing)
    np.testing.assert_allclose(volume.origin, phantom.origin)
    assert Task.objects.get(pk=body["task"]).state == "unassigned"
    originals = default_storage.listdir(volume.series.original_prefix)[1]
    assert originals == ["case_01.nii.gz"]
    with default_storage.open(volume.series.original_prefix + originals[0]) as f:
        assert f.read() == content
    listed = manager_client.get("/api/projects/alpha/tasks/?state=unassigned").json()
    assert body["task"] in [t["id"] for t in listed["results"]]


def test_a_2d_image_becomes_a_one_slice_volume(manager_client: APIClient, tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.arange(20 * 30, dtype=np.int16).reshape(20, 30))
    sitk.WriteImage(image, str(tmp_path / "slice.mha"))
    response = post_file(
        manager_client, "alpha", "slice.mha", (tmp_path / "slice.mha").read_bytes()
    )
    assert response.status_code == 201, response.content
    assert Volume.objects.get(pk=response.json()["volume"]).shape_zyx == (1, 20, 30)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("scan.nii.gz", b"", "could not be read"),
        ("scan.nii.gz", b"\x1f\x8b\x08\x00garbage", "could not be read"),
        ("scan.nrrd", b"NRRD0004\ntype: short\ndimension: 3\n", "could not be read"),
        ("notes.txt", b"hello", "not a supported image file"),
        ("scan.dcm", b"DICM", "not a supported image file"),
    ],
)
def test_bad_files_are_refused_and_leave_nothing(
    manager_client: APIClient, media_root: Path, name: str, content: bytes, message: str
) -> None:
    counts = (Study.objects.count(), Series.objects.count(), Task.objects.count())
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())
    response = post_file(manager_client, "alpha", name, content)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert (Study.objects.count(), Series.objects.count(), Task.objects.count()) == counts
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before


def test_truncated_nifti_is_refused(
    manager_client: APIClient, phantom_file: Path, media_root: Path
) -> None:
    content = phantom_file.read_bytes()
    response = post_file(manager_client, "alpha", "cut.nii.gz", content[: len(content) // 2])
    assert response.status_code == 400
    assert Series.objects.filter(description="cut.nii.gz").count() == 0


def test_a_database_failure_removes_the_stored_files(
    manager_client: APIClient, phantom_file: Path, media_root: Path, monkeypatch: Any
) -> None:
    import projects.intake.image_import

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(projects.intake.image_import, "task_create", broken)
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())
    with pytest.raises(RuntimeError):
        post_file(manager_client, "alpha", "x.nii.gz", phantom_file.read_bytes())
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before
    assert not Series.objects.filter(description="x.nii.gz").exists()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti_is_refused_compressed_or_not(
    manager_client: APIClient, tmp_path: Path, suffix: str
) -> None:
    image = sitk.GetImageFromArray(np.ones((10, 50, 50), dtype=np.int16))
    path = tmp_path / f"full{suffix}"
    sitk.WriteImage(image, str(path), useCompression=suffix.endswith(".gz"))
    content = path.read_bytes()
    response = post_file(manager_client, "alpha", f"cut{suffix}", content[: len(content) * 2 // 3])
    assert response.status_code == 400
    assert "could not be read" in response.json()["detail"]
    assert post_file(manager_client, "alpha", f"whole{suffix}", content).status_code == 201


def test_an_image_with_its_label_map_becomes_lesions(
    manager_client: APIClient, phantom: Any, tmp_path: Path, media_root: Path
) -> None:
    from annotator.annotation.services import mask_version_load
    from annotator.models import Lesion
    from inference.engine import write_phantom

    write_phantom(phantom, tmp_path / "img.nii.gz", tmp_path / "labels.nii.gz")
    with (
        open(tmp_path / "img.nii.gz", "rb") as image,
        open(tmp_path / "labels.nii.gz", "rb") as lab,
    ):
        response = manager_client.post(
            "/api/projects/alpha/volumes/", {"file": image, "labels": lab}, format="multipart"
        )
    assert response.status_code == 201, response.content
    lesions = Lesion.objects.filter(pk__in=response.json()["lesions"]).order_by("pk")
    assert len(lesions) == len(phantom.lesion_masks) == 2
    for lesion, reference in zip(lesions, phantom.lesion_masks, strict=True):
        version = lesion.mask_versions.get()
        assert version.source == "import"
        np.testing.assert_array_equal(mask_version_load(version), reference)

    # a label map on another grid: refused, and neither the volume nor its files stay
    small = sitk.GetImageFromArray(np.ones((3, 4, 5), dtype=np.uint8))
    sitk.WriteImage(small, str(tmp_path / "small.nii.gz"))
    counts = (Series.objects.count(), Task.objects.count(), Lesion.objects.count())
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())
    with open(tmp_path / "img.nii.gz", "rb") as image, open(tmp_path / "small.nii.gz", "rb") as lab:
        response = manager_client.post(
            "/api/projects/alpha/volumes/", {"file": image, "labels": lab}, format="multipart"
        )
    assert response.status_code == 400 and "labels" in response.json()
    assert (Series.objects.count(), Task.objects.count(), Lesion.objects.count()) == counts
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before
