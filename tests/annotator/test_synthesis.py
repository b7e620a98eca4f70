"""Generated DICOM: geometry, exact round trips, documented quantisation; imports and videos."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from django.core.files.storage import default_storage

from annotator.core.errors import InvalidInput
from annotator.imaging.dicom.synthesis import iter_instances, to_bytes
from annotator.imaging.image_files import image_suffix
from annotator.imaging.volumes import volume_array
from annotator.models import Instance, Series, Study
from projects.intake.image_import import upload_suffix, volume_import
from projects.models import Project
from tests.support.dciodvfy import assert_iod_valid


def generate(
    image: sitk.Image, modality: str, window: tuple[float, float] | None = None
) -> list[pydicom.Dataset]:
    return list(
        iter_instances(
            image,
            modality=modality,
            study_uid="1.2.3",
            series_uid="1.2.3.4",
            frame_of_reference_uid="1.2.3.5",
            window=window,
        )
    )


def oblique(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((-120.0, 35.5, 410.25))
    angle = np.deg2rad(20)
    c, s = np.cos(angle), np.sin(angle)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return image


def decoded(instances: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(to_bytes(ds))) for ds in instances]


def real_values(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_int16_volume_round_trips_with_lps_geometry() -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(-1024, 3072, size=(5, 12, 10), dtype=np.int16)
    array[0, 0, 0], array[1, 0, 0] = -32768, 32767
    image = oblique(array)
    instances = decoded(generate(image, "CT", window=(40, 400)))
    assert len(instances) == 5
    direction = np.array(image.GetDirection()).reshape(3, 3)
    for k, ds in enumerate(instances):
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert (ds.Rows, ds.Columns, ds.BitsStored, ds.PixelRepresentation) == (12, 10, 16, 1)
        assert ds.InstanceNumber == k + 1
        expected = np.array(image.TransformIndexToPhysicalPoint((0, 0, k)))
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected, atol=1e-6)
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient],
            [*direction[:, 0], *direction[:, 1]],
            atol=1e-9,
        )
        assert [float(v) for v in ds.PixelSpacing] == [0.9, 0.7]
        assert float(ds.SliceThickness) == 2.5
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40, 400)
        assert ds.StudyInstanceUID == "1.2.3" and ds.FrameOfReferenceUID == "1.2.3.5"
        np.testing.assert_array_equal(real_values(ds), array[k])


@pytest.mark.parametrize(
    ("modality", "sop_class"),
    [("MR", "1.2.840.10008.5.1.4.1.1.4"), ("US", "1.2.840.10008.5.1.4.1.1.7")],
)
def test_sop_class_follows_the_modality(modality: str, sop_class: str) -> None:
    image = sitk.GetImageFromArray(np.zeros((2, 4, 4), dtype=np.int16))
    (ds, _) = decoded(generate(image, modality=modality))
    assert ds.SOPClassUID == sop_class and ds.Modality == modality


def test_uint16_uint8_and_integral_floats_round_trip_exactly() -> None:
    wide = np.array([[[0, 1000, 65535]]], dtype=np.uint16)
    (ds,) = decoded(generate(sitk.GetImageFromArray(wide), modality="MR"))
    assert ds.PixelRepresentation == 0
    np.testing.assert_array_equal(real_values(ds), wide[0])
    grey = np.array([[[0, 7, 255]]], dtype=np.uint8)
    (ds,) = decoded(generate(sitk.GetImageFromArray(grey), modality="US"))
    assert ds.BitsAllocated == 8
    np.testing.assert_array_equal(ds.pixel_array, grey[0])
    integral = np.array([[[-5.0, 0.0, 1200.0]]], dtype=np.float32)
    (ds,) = decoded(generate(sitk.GetImageFromArray(integral), modality="CT"))
    assert (ds.RescaleSlope, ds.RescaleIntercept) == (1, 0)
    np.testing.assert_array_equal(real_values(ds), integral[0])


def test_float_volume_is_quantised_within_half_a_slope() -> None:
    array = np.random.default_rng(2).normal(0.3, 0.05, size=(3, 16, 16)).astype(np.float32)
    instances = decoded(generate(sitk.GetImageFromArray(array), modality="MR"))
    span = float(array.max() - array.min())
    for k, ds in enumerate(instances):
        slope = float(ds.RescaleSlope)
        assert slope <= span / 64000 * 1.0001
        error = np.abs(real_values(ds) - array[k].astype(np.float64)).max()
        assert error <= slope / 2 + 1e-6


@pytest.mark.parametrize(
    ("modality", "array"),
    [
        ("CT", np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 1000),
        ("MR", np.random.default_rng(3).normal(0.3, 0.05, (3, 4, 5)).astype(np.float32)),
        ("US", np.arange(60, dtype=np.uint8).reshape(3, 4, 5)),
        ("PT", np.arange(60, dtype=np.uint16).reshape(3, 4, 5) * 900),
    ],
)
def test_generated_instances_are_valid_for_their_iod(
    modality: str, array: np.ndarray, tmp_path: Path
) -> None:
    for k, ds in enumerate(generate(oblique(array), modality=modality, window=(40, 400))):
        if modality in ("CT", "MR"):
            assert len(ds.ImageType) == 3 and "PatientPosition" in ds
        path = tmp_path / f"{k}.dcm"
        path.write_bytes(to_bytes(ds))
        assert_iod_valid(path)


def test_suffixes_stay_coherent() -> None:
    assert upload_suffix("clip.MP4") == ".mp4" and upload_suffix("a.nii.gz") == ".nii.gz"
    with pytest.raises(InvalidInput):
        image_suffix("clip.mp4")  # masks are images, never videos


@pytest.mark.django_db
def test_import_stores_generated_instances(
    workspace: dict[str, Any], media_root: Path, tmp_path: Path
) -> None:
    series = workspace["imported"].series
    assert series.generated
    instances = list(series.instances.order_by("frame_offset"))
    assert len(instances) == 24
    volume = volume_array(workspace["imported"].volume)
    for k, instance in enumerate(instances):
        assert instance.storage_key == (
            f"projects/alpha/series/{series.series_instance_uid}/instances/"
            f"{instance.sop_instance_uid}.dcm"
        )
        with default_storage.open(instance.storage_key) as f:
            ds = pydicom.dcmread(f)
        assert ds.SeriesInstanceUID == series.series_instance_uid
        assert instance.frame_offset == k and instance.size_bytes > 0
        np.testing.assert_array_equal(real_values(ds), volume[k])
    with default_storage.open(instances[0].storage_key) as f:
        (tmp_path / "first.dcm").write_bytes(f.read())
    assert_iod_valid(tmp_path / "first.dcm")


@pytest.mark.django_db
def test_a_failed_import_leaves_no_instance_files(
    make_project: Callable[..., Project],
    phantom_file: Path,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_project("delta")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr(Instance.objects, "bulk_create", fail)
    with pytest.raises(RuntimeError), open(phantom_file, "rb") as f:
        volume_import(project=project, file=f, filename="phantom.nii.gz")
    assert not Study.objects.exists() and not Instance.objects.exists()
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


def moving_square_video(path: Path, codec: str, pix_fmt: str, frames: int = 20) -> np.ndarray:
    """Encode 64x48 grey frames of a bright square moving right; returns the frames drawn."""
    drawn = np.zeros((frames, 48, 64), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.options = {"qscale": "2"}
        for i in range(frames):
            drawn[i, 16:32, 2 * i : 2 * i + 16] = 230
            rgb = np.repeat(drawn[i][:, :, None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return drawn


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"),
    [("clip.mp4", "mpeg4", "yuv420p"), ("clip.avi", "mjpeg", "yuvj420p")],
)
def test_video_becomes_an_ultrasound_series(
    make_project: Callable[..., Project], tmp_path: Path, name: str, codec: str, pix_fmt: str
) -> None:
    project = make_project("echo")
    path = tmp_path / name
    drawn = moving_square_video(path, codec, pix_fmt)
    with open(path, "rb") as f:
        imported = volume_import(project=project, file=f, filename=name)
    series = imported.series
    assert series.modality == "US" and series.generated
    assert imported.volume.shape_zyx == (20, 48, 64)
    assert imported.volume.spacing == [1.0, 1.0, 1.0]
    originals = default_storage.listdir(series.original_prefix)[1]
    assert originals == [name]
    with default_storage.open(series.original_prefix + name) as f:
        assert f.read() == path.read_bytes()
    instances = list(series.instances.order_by("frame_offset"))
    assert [i.instance_number for i in instances] == list(range(1, 21))
    for i, instance in enumerate(instances):
        with default_storage.open(instance.storage_key) as f:
            ds = pydicom.dcmread(f)
        assert ds.Modality == "US" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        frame = ds.pixel_array.astype(int)
        square = drawn[i] > 0
        # Lossy codec, luminance in video range: the square is bright, the rest dark.
        assert frame[square].mean() > 180 and frame[~square].mean() < 40, i


@pytest.mark.django_db
def test_unreadable_video_is_refused_and_leaves_nothing(
    make_project: Callable[..., Project], media_root: Path
) -> None:
    project = make_project("echo")
    with pytest.raises(InvalidInput, match="could not be read as a video"):
        volume_import(project=project, file=io.BytesIO(b"\x00" * 4000), filename="clip.avi")
    assert not Series.objects.exists()
    assert [p for p in media_root.rglob("*") if p.is_file()] == []
