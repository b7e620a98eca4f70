"""Colour images in: uploads (PNG, JPEG, vector MetaImage) and colour DICOM keep their grey
volume (luma) for everything that exists, and their RGB pixels beside it for the models;
the caps count 3 values a colour voxel, and a refused upload leaves nothing behind."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.files.storage import default_storage
from PIL import Image
from rest_framework.test import APIClient

from annotator.imaging.colour import luma
from annotator.imaging.volumes import volume_array, volume_read
from annotator.models import Lesion, Series, Study, Volume
from projects.intake.ingest import IMPORTED, studies_import
from projects.models import Project, Task
from tests.support.colour_images import rgb_disk, write_rgb_dicom_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(workspace: dict[str, Any], client_for: Callable[[Any], APIClient]) -> APIClient:
    return client_for(workspace["manager"])


def upload(client: APIClient, name: str, content: bytes, **files: tuple[str, bytes]) -> Any:
    data: dict[str, Any] = {}
    for field, (filename, body) in {"file": (name, content), **files}.items():
        data[field] = io.BytesIO(body)
        data[field].name = filename
    return client.post("/api/projects/alpha/volumes/", data, format="multipart")


def png_bytes(pixels: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in media_root.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_colour_png_keeps_its_luma_and_its_rgb(manager_client: APIClient, mode: str) -> None:
    rgb, _ = rgb_disk(height=40, width=56)
    pixels = rgb[0]
    if mode == "RGBA":
        pixels = np.concatenate([pixels, np.full((40, 56, 1), 200, np.uint8)], axis=-1)
    response = upload(manager_client, "polyp.png", png_bytes(pixels, mode))
    assert response.status_code == 201, response.content
    volume = Volume.objects.get(pk=response.json()["volume"])
    assert volume.shape_zyx == (1, 40, 56)
    assert volume.colour_storage_key.endswith("/colour.mha")
    # The series' volume is the grey image (rounded BT.601 luma, uint8 as the picture was).
    grey = volume_array(volume)
    assert grey.dtype == np.uint8
    np.testing.assert_array_equal(grey, luma(rgb))
    # The colour pixels beside it, alpha dropped, on the same grid.
    colour = volume_read(volume, colour=True)
    assert colour.GetNumberOfComponentsPerPixel() == 3
    assert colour.GetSize() == tuple(volume.size)
    np.testing.assert_allclose(colour.GetSpacing(), volume.spacing)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(colour), rgb)


def test_a_jpeg_and_a_vector_metaimage_are_colour_volumes(
    manager_client: APIClient, tmp_path: Path
) -> None:
    rgb, _ = rgb_disk(depth=3, height=30, width=40, seed=3)
    buffer = io.BytesIO()
    Image.fromarray(rgb[1], "RGB").save(buffer, format="JPEG", quality=95)
    response = upload(manager_client, "frame.JPG", buffer.getvalue())
    assert response.status_code == 201, response.content
    volume = Volume.objects.get(pk=response.json()["volume"])
    colour = sitk.GetArrayFromImage(volume_read(volume, colour=True))
    assert colour.shape == (1, 30, 40, 3)
    np.testing.assert_array_equal(volume_array(volume), luma(colour))

    image = sitk.GetImageFromArray(rgb, isVector=True)
    image.SetSpacing((0.4, 0.4, 2.0))
    sitk.WriteImage(image, str(tmp_path / "cine.mha"))
    response = upload(manager_client, "cine.mha", (tmp_path / "cine.mha").read_bytes())
    assert response.status_code == 201, response.content
    volume = Volume.objects.get(pk=response.json()["volume"])
    assert volume.shape_zyx == (3, 30, 40)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume_read(volume, colour=True)), rgb)


def test_a_grey_picture_has_no_colour_volume(manager_client: APIClient) -> None:
    grey = luma(rgb_disk(height=20, width=24)[0][0])
    response = upload(manager_client, "grey.png", png_bytes(grey, "L"))
    assert response.status_code == 201, response.content
    volume = Volume.objects.get(pk=response.json()["volume"])
    assert volume.colour_storage_key == ""
    np.testing.assert_array_equal(volume_array(volume)[0], grey)
    # Asked for colour, a grey series gives its grey volume.
    assert volume_read(volume, colour=True).GetNumberOfComponentsPerPixel() == 1


def test_a_colour_image_counts_three_values_a_voxel_against_the_cap(
    manager_client: APIClient, settings: Any, media_root: Path
) -> None:
    rgb, _ = rgb_disk(height=20, width=30)
    content = png_bytes(rgb[0], "RGB")
    settings.MAX_IMAGE_VOXELS = 3 * 20 * 30 - 1  # the grey image would fit, its colour not
    counts = (Study.objects.count(), Series.objects.count(), Task.objects.count())
    before = stored_files(media_root)
    response = upload(manager_client, "big.png", content)
    assert response.status_code == 400
    body = response.json()
    assert "30 x 20 voxels of 3 values (1800 values), over the limit of 1799" in body["file"][0]
    assert (Study.objects.count(), Series.objects.count(), Task.objects.count()) == counts
    assert stored_files(media_root) == before
    settings.MAX_IMAGE_VOXELS = 3 * 20 * 30
    assert upload(manager_client, "big.png", content).status_code == 201


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cut.png", "truncated", "could not be read"),
        ("noise.jpg", "garbage", "could not be read"),
        (
            "field.mha",
            "two components",
            "2 components per voxel; expected grey values, RGB or RGBA",
        ),
    ],
)
def test_bad_colour_uploads_are_refused_naming_the_file(
    manager_client: APIClient,
    media_root: Path,
    tmp_path: Path,
    name: str,
    content: str,
    message: str,
) -> None:
    if content == "truncated":
        whole = png_bytes(rgb_disk()[0][0], "RGB")
        body = whole[: len(whole) // 2]
    elif content == "garbage":
        body = b"\xff\xd8\xff\xe0" + b"not a jpeg" * 100
    else:
        field = sitk.GetImageFromArray(np.zeros((2, 6, 7, 2), np.float32), isVector=True)
        sitk.WriteImage(field, str(tmp_path / name))
        body = (tmp_path / name).read_bytes()
    before = stored_files(media_root)
    response = upload(manager_client, name, body)
    assert response.status_code == 400
    body = response.json()
    assert message in body["detail"] and body["file"], body
    assert "/" not in body["detail"]  # no server path
    assert stored_files(media_root) == before
    assert not Series.objects.filter(description=name).exists()


def test_label_maps_stay_grey_and_a_refused_one_removes_the_colour_file(
    manager_client: APIClient, media_root: Path, tmp_path: Path
) -> None:
    rgb, mask = rgb_disk(depth=2, height=16, width=20)
    image = sitk.GetImageFromArray(rgb, isVector=True)
    sitk.WriteImage(image, str(tmp_path / "frames.mha"))
    frames = (tmp_path / "frames.mha").read_bytes()
    # A colour label map is no label map.
    sitk.WriteImage(image, str(tmp_path / "labels.mha"))
    before = stored_files(media_root)
    colour_labels = ("labels.mha", (tmp_path / "labels.mha").read_bytes())
    response = upload(manager_client, "frames.mha", frames, labels=colour_labels)
    assert response.status_code == 400
    assert "3 components per voxel; expected grey values" in response.json()["labels"][0]
    # A label map on another grid is refused after the volume and its colour were stored:
    # both files go again.
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 5, 5), np.uint8)), str(tmp_path / "l.mha"))
    small = ("l.mha", (tmp_path / "l.mha").read_bytes())
    response = upload(manager_client, "frames.mha", frames, labels=small)
    assert response.status_code == 400 and "labels" in response.json()
    assert stored_files(media_root) == before
    # On the right grid, the labels become lesions on the grey grid.
    sitk.WriteImage(sitk.GetImageFromArray(mask.astype(np.uint8)), str(tmp_path / "ok.mha"))
    good = ("ok.mha", (tmp_path / "ok.mha").read_bytes())
    response = upload(manager_client, "frames.mha", frames, labels=good)
    assert response.status_code == 201, response.content
    assert Lesion.objects.filter(pk__in=response.json()["lesions"]).count() == 1
    assert Volume.objects.get(pk=response.json()["volume"]).colour_storage_key


# -- colour DICOM -------------------------------------------------------------------------


@pytest.fixture
def project(make_project: Callable[..., Project], team: dict[str, Any]) -> Project:
    return make_project("imaging", manager=team["manager"], annotator=team["annotator"])


def test_a_colour_dicom_series_keeps_its_rgb_beside_its_luma(
    project: Project, tmp_path: Path
) -> None:
    rgb, _ = rgb_disk(depth=4, height=24, width=32, seed=8)
    write_rgb_dicom_series(tmp_path / "series", rgb, spacing=(0.5, 0.5, 2.0))
    report = studies_import(project=project, paths=[tmp_path / "series"])
    (summary,) = report.series
    assert summary.status == IMPORTED and summary.volume_id is not None, summary.reason
    volume = Volume.objects.get(pk=summary.volume_id)
    assert volume.colour_storage_key.endswith("/colour.mha")
    # The grey volume as before: rounded luma (int16, as DICOM decoding stores it).
    np.testing.assert_array_equal(volume_array(volume), luma(rgb).astype(np.int16))
    colour = volume_read(volume, colour=True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(colour), rgb)
    np.testing.assert_allclose(colour.GetSpacing(), volume.spacing)
    np.testing.assert_allclose(colour.GetOrigin(), volume.origin)
    assert default_storage.exists(volume.colour_storage_key)


def test_a_colour_dicom_over_the_cap_for_colour_is_kept_grey(
    project: Project, tmp_path: Path, settings: Any
) -> None:
    rgb, _ = rgb_disk(depth=2, height=16, width=16, seed=9)
    write_rgb_dicom_series(tmp_path / "series", rgb)
    settings.MAX_IMAGE_VOXELS = 2 * 16 * 16 * 2  # grey fits, 3 values a voxel do not
    report = studies_import(project=project, paths=[tmp_path / "series"])
    (summary,) = report.series
    assert summary.status == IMPORTED and summary.volume_id is not None, summary.reason
    assert any("colour kept as grey only" in w for w in summary.warnings), summary.warnings
    volume = Volume.objects.get(pk=summary.volume_id)
    assert volume.colour_storage_key == ""
    np.testing.assert_array_equal(volume_array(volume), luma(rgb).astype(np.int16))


def test_a_grey_dicom_series_has_no_colour_volume(project: Project, tmp_path: Path) -> None:
    from tests.annotator.test_dicom_reading import write_ct_series

    write_ct_series(tmp_path / "ct", count=3)
    (summary,) = studies_import(project=project, paths=[tmp_path / "ct"]).series
    assert summary.volume_id is not None
    assert Volume.objects.get(pk=summary.volume_id).colour_storage_key == ""
