"""Scanning DICOM input without Django: geometry, duplicates, gaps, bad files and unsafe zips."""

import importlib.resources
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from annotator.imaging.dicom import DUPLICATE, IMAGE, REJECTED, ScanResult, scan

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Rows run along x, columns along -y: the slice normal is -z, so slices sort by descending z.
FLIPPED = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


@dataclass
class Slice:
    path: Path
    position: tuple[float, float, float]
    stored: np.ndarray  # the stored values (before rescale)
    sop_instance_uid: str


def write_ct_slice(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    position: tuple[float, float, float],
    instance_number: int,
    stored: np.ndarray,
    orientation: tuple[float, ...] = AXIAL,
    sop_uid: str | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> str:
    """One CT Image Storage file with 16-bit signed stored values; returns its SOP UID."""
    uid = sop_uid or str(generate_uid())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = series_uid[:-1] + "9"
    ds.Modality = "CT"
    ds.PatientID = "P-001"
    ds.PatientName = "Test^Patient"
    ds.StudyDate = "20240102"
    ds.StudyDescription = "Chest"
    ds.SeriesDescription = "Axial 2.5"
    ds.SeriesNumber = 3
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [f"{v:g}" for v in position]
    ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
    ds.PixelSpacing = ["0.5", "0.75"]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.PixelData = stored.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return uid


def write_ct_series(
    folder: Path,
    *,
    count: int = 5,
    step: float = 2.5,
    size: int = 16,
    orientation: tuple[float, ...] = AXIAL,
    seed: int = 0,
    skip: tuple[int, ...] = (),
    slope: float = 1.0,
) -> list[Slice]:
    """A series of ``count`` slices whose file names and InstanceNumbers are shuffled.

    Returned in position order along the slice normal (the volume's z order).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    study_uid, series_uid = generate_uid(), generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    indices = [i for i in range(count) if i not in skip]
    names = rng.sample(range(100, 100 + count), count)
    numbers = rng.sample(range(1, count + 1), count)
    slices = []
    for i in indices:
        position = tuple(float(v) for v in np.array([-12.0, 30.0, 7.0]) + i * step * normal)
        stored = np.random.default_rng(seed + i).integers(0, 2000, (size, size)).astype(np.int16)
        path = folder / f"IMG{names[i]}.dcm"
        uid = write_ct_slice(
            path,
            study_uid=study_uid,
            series_uid=series_uid,
            position=(position[0], position[1], position[2]),
            instance_number=numbers[i],
            stored=stored,
            orientation=orientation,
            slope=slope,
        )
        slices.append(Slice(path, (position[0], position[1], position[2]), stored, uid))
    return slices


def run_scan(tmp_path: Path, *paths: Path, **options: object) -> ScanResult:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return scan(list(paths), workdir=workdir, **options)  # type: ignore[arg-type]


def outcome_of(result: ScanResult, name: str) -> tuple[str, str]:
    found = [f for f in result.files if f.source.endswith(name)]
    assert len(found) == 1, [f.source for f in result.files]
    return found[0].status, found[0].reason


@pytest.mark.parametrize("orientation", [AXIAL, FLIPPED])
def test_slices_are_sorted_by_position_along_the_normal(
    tmp_path: Path, orientation: tuple[float, ...]
) -> None:
    slices = write_ct_series(tmp_path / "in", count=6, orientation=orientation)
    result = run_scan(tmp_path, tmp_path / "in")
    assert [f.status for f in result.files] == [IMAGE] * 6
    (series,) = result.series
    assert series.error == "" and series.image is not None
    assert [i.sop_instance_uid for i in series.instances] == [s.sop_instance_uid for s in slices]
    assert [i.frame_offset for i in series.instances] == list(range(6))
    image = series.image
    assert image.GetSize() == (16, 16, 6)
    np.testing.assert_allclose(image.GetSpacing(), (0.75, 0.5, 2.5))
    for k, s in enumerate(slices):  # each slice lands where its position says
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((0, 0, k)), s.position)
    expected = np.stack([s.stored.astype(np.int32) - 1024 for s in slices])
    voxels = sitk.GetArrayFromImage(image)
    assert voxels.dtype == np.int16
    np.testing.assert_array_equal(voxels, expected)


def test_a_fractional_rescale_gives_float32(tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "in", count=3, slope=0.5)
    (series,) = run_scan(tmp_path, tmp_path / "in").series
    assert series.image is not None
    voxels = sitk.GetArrayFromImage(series.image)
    assert voxels.dtype == np.float32
    np.testing.assert_allclose(voxels, np.stack([s.stored * 0.5 - 1024 for s in slices]))


def test_a_missing_slice_rejects_the_series(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", count=6, skip=(3,))
    result = run_scan(tmp_path, tmp_path / "in")
    (series,) = result.series
    assert series.error.startswith("missing slices: a gap of 5.00 mm")
    assert "about 1 slice(s) missing" in series.error
    assert series.image is None
    assert {f.status for f in result.files} == {REJECTED}
    assert all(f.reason.startswith("series rejected: missing slices") for f in result.files)


def test_duplicate_instances(tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "in", count=4)
    shutil.copy(slices[1].path, tmp_path / "in" / "copy.dcm")
    result = run_scan(tmp_path, tmp_path / "in")
    status, reason = outcome_of(result, "copy.dcm")
    assert status == DUPLICATE and "same SOPInstanceUID" in reason
    (series,) = result.series
    assert series.error == "" and series.number_of_slices == 4

    # Another object (a new SOPInstanceUID) at a position already taken: the series is refused.
    ds = pydicom.dcmread(slices[2].path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "in" / "other.dcm")
    result = run_scan(tmp_path, tmp_path / "in")
    (series,) = result.series
    assert "2 frames share a position" in series.error
    assert "different SOPInstanceUIDs" in series.error
    assert outcome_of(result, "other.dcm")[0] == REJECTED


def test_a_mixed_size_series_is_rejected_whole(tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "in", count=4)
    ds = pydicom.dcmread(slices[0].path)
    write_ct_slice(
        tmp_path / "in" / "big.dcm",
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        position=(-12.0, 30.0, 7.0 + 10 * 2.5),
        instance_number=99,
        stored=np.zeros((32, 32), np.int16),
    )
    result = run_scan(tmp_path, tmp_path / "in")
    (series,) = result.series
    assert series.error == (
        "mixed series: inconsistent image size (Rows x Columns): 16x16 (4 frames), 32x32 (1 frames)"
    )
    assert [f.status for f in result.files] == [REJECTED] * 5


def test_bad_files_each_get_a_reason(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "good", count=3)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "notes.txt").write_text("not an image\n" * 20)
    other = write_ct_series(tmp_path / "other", count=1)
    data = other[0].path.read_bytes()
    (bad / "truncated.dcm").write_bytes(data[: len(data) - 200])
    (bad / "header_only.dcm").write_bytes(data[:300])
    result = run_scan(tmp_path, tmp_path / "good", bad)
    assert outcome_of(result, "empty.dcm") == (REJECTED, "empty file (0 bytes)")
    status, reason = outcome_of(result, "notes.txt")
    assert status == REJECTED and reason.startswith("not a DICOM file")
    status, reason = outcome_of(result, "truncated.dcm")
    assert status == REJECTED and reason.startswith("truncated pixel data")
    status, reason = outcome_of(result, "header_only.dcm")
    assert status == REJECTED and "no pixel data" in reason
    # The good series still comes through.
    good = [s for s in result.series if not s.error]
    assert len(good) == 1 and good[0].number_of_slices == 3


def zip_folder(folder: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.iterdir()):
            z.write(path, f"series/{path.name}")
        for name, content in (extra or {}).items():
            z.writestr(name, content)
    return archive


def test_a_zip_with_path_traversal_refuses_that_entry(tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "in", count=3)
    evil = slices[0].path.read_bytes()
    archive = zip_folder(
        tmp_path / "in", tmp_path / "upload.zip", {"../evil.dcm": evil, "/abs.dcm": evil}
    )
    result = run_scan(tmp_path, archive)
    status, reason = outcome_of(result, "../evil.dcm")
    assert status == REJECTED and "path traversal" in reason
    status, reason = outcome_of(result, "/abs.dcm")
    assert status == REJECTED and "absolute" in reason
    assert not list(tmp_path.rglob("evil.dcm")) and not Path("/abs.dcm").exists()
    (series,) = result.series
    assert series.error == "" and series.number_of_slices == 3
    assert all(i.source.startswith(f"{archive}/series/") for i in series.instances)


def test_zip_bombs_are_refused(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", count=2)
    zeros = b"\0" * (8 * 1024 * 1024)  # deflates about 1000 times
    bomb = zip_folder(tmp_path / "in", tmp_path / "bomb.zip", {"zeros.dcm": zeros})
    result = run_scan(tmp_path, bomb)
    assert [(f.status, f.reason) for f in result.files] == [
        (
            REJECTED,
            "zip bomb refused: entry 'zeros.dcm' inflates more than 200 times its compressed "
            f"size ({zipfile.ZipFile(bomb).getinfo('zeros.dcm').compress_size} bytes)",
        )
    ]
    assert result.series == []
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file()]  # nothing left over

    small = zip_folder(tmp_path / "in", tmp_path / "small.zip")
    result = run_scan(tmp_path, small, zip_limits={"max_total_bytes": 1000})
    assert result.files[0].reason == "zip bomb refused: more than 1000 bytes uncompressed in all"
    result = run_scan(tmp_path, small, zip_limits={"max_entries": 1})
    assert result.files[0].reason == "zip bomb refused: 2 entries (limit 1)"


def test_an_overlong_uid_is_refused_not_truncated(tmp_path: Path) -> None:
    stored = np.zeros((16, 16), np.int16)
    write_ct_slice(
        tmp_path / "long.dcm",
        study_uid=str(generate_uid()),
        series_uid=str(generate_uid()),
        position=(0.0, 0.0, 0.0),
        instance_number=1,
        stored=stored,
        sop_uid="1.2." + "3" * 70,
    )
    result = run_scan(tmp_path, tmp_path / "long.dcm")
    assert [(f.status, f.reason) for f in result.files] == [
        (REJECTED, "SOPInstanceUID longer than 64")
    ]


def test_undecodable_pixel_data_rejects_the_file_and_its_series(tmp_path: Path) -> None:
    """A JPEG 2000 frame cut short, in a well-formed file (pydicom-data's enhanced MR)."""
    source = Path(str(importlib.resources.files("data_store") / "data"))
    ds = pydicom.dcmread(source / "emri_small_jpeg_2k_lossless.dcm")
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    frames[3] = frames[3][:40]
    ds.PixelData = encapsulate(frames)
    ds.save_as(tmp_path / "broken.dcm")
    result = run_scan(tmp_path, tmp_path / "broken.dcm")
    ((status, reason),) = [(f.status, f.reason) for f in result.files]
    assert status == REJECTED
    assert reason.startswith(
        "pixel data could not be decoded (JPEG 2000 Image Compression (Lossless Only)): "
    )
    assert "pylibjpeg: Error decoding the J2K data" in reason
    (series,) = result.series
    assert series.image is None and series.error.startswith("1 of 1 instances could not be")
