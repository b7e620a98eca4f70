"""Hostile label objects: SEGs and RTSTRUCTs that declare more than they hold.

A few megabytes can declare 100,000 segments or ROIs, frames naming thousands of segments, or a
contour of millions of points; the old reader allocated a mask of the whole series per declared
segment before looking at a frame. Each object here is written by the test on a series it
imports too; the label import is timed and its peak memory measured in a separate process
(``hostile_probe.py labels``), and an object refused leaves no lesion, row or mask file.
"""

import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from rest_framework.test import APIClient

from annotator.models import Lesion, MaskVersion, Series
from projects.intake.ingest import studies_import
from projects.models import Project
from tests.annotator.hostile_probe import measured, run_probe
from tests.annotator.test_dicom_reading import Slice, write_ct_series
from tests.annotator.test_hostile_images import named

pytestmark = pytest.mark.django_db
SEG_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.4")
LABELMAP_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.7")
RTSTRUCT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.481.3")
AXIAL = ["1", "0", "0", "0", "1", "0"]


# ---------------------------------------------------------------------------------------------
# Writing label objects for a series of write_ct_series (0.5 x 0.75 mm pixels, axial)


def _file(sop_class: UID, modality: str, slices: Sequence[Slice]) -> Dataset:
    source = pydicom.dcmread(slices[0].path, stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = source.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = source.FrameOfReferenceUID
    ds.Modality = modality
    ds.PatientID = source.PatientID
    return ds


def item(**values: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def seg_file(
    path: Path,
    slices: Sequence[Slice],
    frames: Sequence[tuple[int, int, np.ndarray]],
    segments: dict[int, str],
    *,
    labelmap: bool = False,
) -> None:
    """A DICOM SEG on ``slices``: each frame is (slice index, segment number, pixels); BINARY
    (bit-packed), or LABELMAP (8-bit values, the segment number ignored)."""
    ds = _file(LABELMAP_STORAGE if labelmap else SEG_STORAGE, "SEG", slices)
    source = pydicom.dcmread(slices[0].path, stop_before_pixels=True)
    ds.ReferencedSeriesSequence = [
        item(
            SeriesInstanceUID=source.SeriesInstanceUID,
            ReferencedInstanceSequence=[
                item(
                    ReferencedSOPClassUID=source.SOPClassUID,
                    ReferencedSOPInstanceUID=s.sop_instance_uid,
                )
                for s in slices
            ],
        )
    ]
    ds.SegmentationType = "LABELMAP" if labelmap else "BINARY"
    ds.SegmentSequence = [
        item(SegmentNumber=number, SegmentLabel=name) for number, name in segments.items()
    ]
    rows, columns = frames[0][2].shape
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    bits = 8 if labelmap else 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.SharedFunctionalGroupsSequence = [
        item(
            PlaneOrientationSequence=[item(ImageOrientationPatient=AXIAL)],
            PixelMeasuresSequence=[item(PixelSpacing=["0.5", "0.75"], SliceThickness="2.5")],
        )
    ]
    per_frame = []
    for index, number, _ in frames:
        groups = item(
            PlanePositionSequence=[
                item(ImagePositionPatient=[f"{v:g}" for v in slices[index].position])
            ],
            DerivationImageSequence=[
                item(
                    SourceImageSequence=[
                        item(ReferencedSOPInstanceUID=slices[index].sop_instance_uid)
                    ]
                )
            ],
        )
        if not labelmap:
            groups.SegmentIdentificationSequence = [item(ReferencedSegmentNumber=number)]
        per_frame.append(groups)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    pixels = np.stack([f[2] for f in frames])
    ds.PixelData = pixels.astype(np.uint8).tobytes() if labelmap else pack_bits(pixels)
    ds.save_as(path, enforce_file_format=True)


def rtstruct_file(
    path: Path, slices: Sequence[Slice], rois: dict[str, list[list[tuple[float, ...]]]]
) -> Dataset:
    """An RTSTRUCT on ``slices`` with closed planar contours in patient mm, written to ``path``
    and read back (so that raw elements set on it are written as they are)."""
    ds = _file(RTSTRUCT_STORAGE, "RTSTRUCT", slices)
    source = pydicom.dcmread(slices[0].path, stop_before_pixels=True)
    ds.ReferencedFrameOfReferenceSequence = [
        item(
            FrameOfReferenceUID=source.FrameOfReferenceUID,
            RTReferencedStudySequence=[
                item(
                    ReferencedSOPInstanceUID=source.StudyInstanceUID,
                    RTReferencedSeriesSequence=[
                        item(
                            SeriesInstanceUID=source.SeriesInstanceUID,
                            ContourImageSequence=[
                                item(ReferencedSOPInstanceUID=s.sop_instance_uid) for s in slices
                            ],
                        )
                    ],
                )
            ],
        )
    ]
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        ds.StructureSetROISequence.append(
            item(
                ROINumber=number,
                ROIName=name,
                ReferencedFrameOfReferenceUID=source.FrameOfReferenceUID,
            )
        )
        ds.ROIContourSequence.append(
            item(
                ReferencedROINumber=number,
                ContourSequence=[
                    item(
                        ContourGeometricType="CLOSED_PLANAR",
                        NumberOfContourPoints=len(points),
                        ContourData=[f"{v:g}" for p in points for v in p],
                    )
                    for points in contours
                ],
            )
        )
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def repeated(ds: Dataset, keyword: str, one: Dataset, count: int) -> None:
    """Make ``ds.keyword`` a sequence of ``count`` copies of ``one``, encoded once and repeated
    as bytes (as a hostile writer would; pydicom would take minutes to build them)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, one)
    body = buffer.getvalue()
    value = (struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body) * count
    tag = Tag(keyword)
    ds._dict[tag] = RawDataElement(tag, "SQ", len(value), value, 0, False, True)


def raw_value(ds: Dataset, keyword: str, vr: str, value: bytes) -> None:
    """An element written as these bytes, unchecked by pydicom."""
    tag = Tag(keyword)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def square(slice_: Slice, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, ...]]:
    """A square in mm offsets from the slice's first pixel centre, on its plane."""
    x, y, z = slice_.position
    return [(x + x0, y + y0, z), (x + x1, y + y0, z), (x + x1, y + y1, z), (x + x0, y + y1, z)]


def disk(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[:size, :size]
    return np.asarray((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2)


# ---------------------------------------------------------------------------------------------
# Running the import in a process of its own


def probe_labels(series: Path, label: Path, media_root: Path) -> dict[str, Any]:
    result = run_probe(
        "labels",
        "hostile",
        str(series),
        str(label),
        env={"ANNOTATOR_MEDIA_ROOT": str(media_root)},
        timeout=600,
    )
    (outcome,) = result["report"]["files"]
    result["outcome"] = outcome
    print(
        f"{label.name}: {measured(result)} "
        f"(before {result['rss_before_mb']:.0f} MB): {outcome['status']} {outcome['reason'][:300]}"
    )
    return result


def mask_files(media_root: Path) -> list[Path]:
    return [p for p in (media_root / "projects").rglob("masks/**/*") if p.is_file()]


@pytest.fixture
def series(make_project: Callable[..., Project], tmp_path: Path) -> tuple[Path, list[Slice]]:
    """A 16 x 16 x 4 CT series on disk (imported by the probe), in project "hostile"."""
    make_project("hostile")
    folder = tmp_path / "series"
    return folder, write_ct_series(folder, count=4, size=16)


def refused_fast_and_small(result: dict[str, Any], reason: str, media_root: Path) -> None:
    outcome = result["outcome"]
    assert outcome["status"] == "rejected" and reason in outcome["reason"], outcome
    assert result["cpu_seconds"] < 1.0, result
    assert result["peak_rss_mb"] < 500, result
    assert Series.objects.count() == 1
    assert not Lesion.objects.exists() and not MaskVersion.objects.exists()
    assert not mask_files(media_root)


# ---------------------------------------------------------------------------------------------
# Declared counts over the caps: refused before anything is made for them


@pytest.mark.django_db(transaction=True)
def test_a_seg_declaring_100000_segments_is_refused_fast_and_small(
    series: tuple[Path, list[Slice]], tmp_path: Path, media_root: Path
) -> None:
    folder, slices = series
    path = tmp_path / "segments.dcm"
    frame = np.zeros((16, 16), bool)
    frame[4:9, 5:11] = True
    seg_file(path, slices, [(1, 1, frame)], {1: "tumour"})
    ds = pydicom.dcmread(path)
    repeated(ds, "SegmentSequence", item(SegmentNumber=1, SegmentLabel="organ"), 100_000)
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 4 * 1024 * 1024
    result = probe_labels(folder, path, media_root)
    refused_fast_and_small(result, "declares more than 256 segments", media_root)
    assert "ANNOTATOR_MAX_LABELS" in result["outcome"]["reason"]


@pytest.mark.django_db(transaction=True)
def test_a_seg_whose_frames_reference_thousands_of_segments_is_refused(
    series: tuple[Path, list[Slice]], tmp_path: Path, media_root: Path
) -> None:
    """Few segments declared, 4,000 frames (under the frame cap) naming 4,000 of them."""
    folder, slices = series
    path = tmp_path / "frames.dcm"
    frame = np.ones((16, 16), bool)
    frames = [(n % 4, n + 1, frame) for n in range(4000)]
    seg_file(path, slices, frames, {1: "tumour", 2: "node"})
    result = probe_labels(folder, path, media_root)
    refused_fast_and_small(result, "frames reference more than 256 segments", media_root)


@pytest.mark.django_db(transaction=True)
def test_an_rtstruct_declaring_60000_rois_is_refused_fast_and_small(
    series: tuple[Path, list[Slice]], tmp_path: Path, media_root: Path
) -> None:
    """60,000 ROIs (180,000 items): within the structure caps (annotator.imaging.dicom.structure
    refuses more than 200,000 items before pydicom reads the file), so the labels cap says."""
    folder, slices = series
    path = tmp_path / "rois.dcm"
    ds = rtstruct_file(path, slices, {"GTV": [square(slices[1], 1, 1, 4, 4)]})
    contour = item(
        ContourGeometricType="CLOSED_PLANAR",
        NumberOfContourPoints=4,
        ContourData=[f"{v:g}" for p in square(slices[1], 1, 1, 4, 4) for v in p],
    )
    repeated(ds, "StructureSetROISequence", item(ROINumber=7, ROIName="organ"), 60_000)
    repeated(
        ds,
        "ROIContourSequence",
        item(ReferencedROINumber=7, ContourSequence=[contour]),
        60_000,
    )
    ds.save_as(path, enforce_file_format=True)
    result = probe_labels(folder, path, media_root)
    refused_fast_and_small(result, "declares more than 256 ROIs", media_root)


@pytest.mark.django_db(transaction=True)
def test_a_contour_of_two_million_points_is_refused_before_they_are_parsed(
    series: tuple[Path, list[Slice]], tmp_path: Path, media_root: Path
) -> None:
    folder, slices = series
    path = tmp_path / "points.dcm"
    ds = rtstruct_file(path, slices, {"GTV": [square(slices[1], 1, 1, 4, 4)]})
    x, y, z = slices[1].position
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    # Over 64 KiB, a DS value can only be written with a 4-byte length: as UN (or implicit VR).
    raw_value(contour, "ContourData", "UN", f"{x:g}\\{y:g}\\{z:g}\\".encode() * 2_000_000 + b"0 ")
    ds.save_as(path, enforce_file_format=True)
    result = probe_labels(folder, path, media_root)
    refused_fast_and_small(result, "more than the 100000 a contour may hold", media_root)


@pytest.mark.django_db(transaction=True)
def test_a_lying_number_of_contour_points_is_noted_not_believed(
    series: tuple[Path, list[Slice]], tmp_path: Path, media_root: Path
) -> None:
    """NumberOfContourPoints claims two billion; the four points present are imported."""
    folder, slices = series
    path = tmp_path / "claim.dcm"
    # Columns are 0.75 mm apart, rows 0.5 mm: from 1 to 4 mm, the centres of columns 2..5
    # and of rows 2..8 (on the edges included).
    ds = rtstruct_file(path, slices, {"GTV": [square(slices[2], 1.0, 1.0, 4.0, 4.0)]})
    ds.ROIContourSequence[0].ContourSequence[0].NumberOfContourPoints = 2_147_483_647
    ds.save_as(path, enforce_file_format=True)
    result = probe_labels(folder, path, media_root)
    outcome = result["outcome"]
    assert outcome["status"] == "imported", outcome
    assert "declares 2147483647 points and holds 4" in outcome["reason"]
    assert result["cpu_seconds"] < 1.0 and result["peak_rss_mb"] < 500, result
    (lesion,) = Lesion.objects.all()
    assert lesion.key_slice == 2 and lesion.mask_versions.get().voxel_count == 4 * 7


# ---------------------------------------------------------------------------------------------
# A legitimate object with many segments: one mask in memory at a time


@pytest.mark.django_db(transaction=True)
def test_a_seg_of_120_segments_imports_with_one_mask_in_memory_at_a_time(
    make_project: Callable[..., Project], tmp_path: Path, media_root: Path
) -> None:
    """120 segments (TotalSegmentator has 117) of 8 slices each on a 256 x 256 x 64 CT: the old
    reader held 120 full masks (4 MiB each, 480 MiB) at once; the import's peak must stay
    under a quarter of that above what the process held before it."""
    make_project("hostile")
    size, depth, count = 256, 64, 120
    slices = write_ct_series(tmp_path / "series", count=depth, size=size)
    frames = []
    for number in range(1, count + 1):
        first = (number * 7) % (depth - 8)
        centre = (20 + (number * 37) % 216, 20 + (number * 53) % 216)
        for k in range(first, first + 8):
            frames.append((k, number, disk(size, centre, 6 + number % 10)))
    path = tmp_path / "organs.dcm"
    seg_file(path, slices, frames, {n: f"organ {n}" for n in range(1, count + 1)})
    del frames
    result = probe_labels(tmp_path / "series", path, media_root)
    outcome = result["outcome"]
    assert outcome["status"] == "imported" and "120 lesion(s)" in outcome["reason"], outcome
    assert Lesion.objects.count() == count
    full_masks = count * size * size * depth / 1024**2
    grown = result["peak_rss_mb"] - result["rss_before_mb"]
    print(f"120 segments: peak grew {grown:.0f} MB; 120 full masks are {full_masks:.0f} MB")
    assert grown < full_masks / 4, result
    lesion = Lesion.objects.order_by("pk").first()
    assert lesion is not None and lesion.mask_versions.get().voxel_count > 0


# ---------------------------------------------------------------------------------------------
# Through the API, and a failure half way through an object


def test_a_label_object_over_the_cap_alone_is_a_400_naming_the_reason(
    team: dict[str, Any],
    make_project: Callable[..., Project],
    client_for: Callable[[Any], APIClient],
    tmp_path: Path,
    media_root: Path,
) -> None:
    make_project("imaging", manager=team["manager"])
    client = client_for(team["manager"])
    slices = write_ct_series(tmp_path / "series", count=4, size=16)
    files = [named(s.path.name, s.path.read_bytes()) for s in slices]
    response = client.post("/api/projects/imaging/imports/", {"files": files}, format="multipart")
    assert response.status_code == 201, response.content
    path = tmp_path / "organs.dcm"
    frame = np.ones((16, 16), bool)
    seg_file(path, slices, [(k % 4, k + 1, frame) for k in range(300)], {1: "liver"})
    response = client.post(
        "/api/projects/imaging/imports/",
        {"files": [named("organs.dcm", path.read_bytes())]},
        format="multipart",
    )
    assert response.status_code == 400, response.content
    (outcome,) = response.json()["files"]
    assert outcome["status"] == "rejected", outcome
    assert outcome["reason"].startswith("SEG object: the SEG's frames reference more than 256")
    assert "ANNOTATOR_MAX_LABELS" in outcome["reason"]
    assert not Lesion.objects.exists() and not mask_files(media_root)


def test_a_label_map_with_more_values_than_the_cap_is_a_400_naming_labels(
    team: dict[str, Any],
    make_project: Callable[..., Project],
    client_for: Callable[[Any], APIClient],
    tmp_path: Path,
    media_root: Path,
) -> None:
    make_project("imaging", manager=team["manager"])
    image = sitk.GetImageFromArray(np.zeros((6, 20, 20), np.int16))
    labels = sitk.GetImageFromArray(
        (np.arange(6 * 20 * 20) % 300).reshape(6, 20, 20).astype(np.uint16)
    )
    for name, written in (("scan.nii.gz", image), ("labels.nii.gz", labels)):
        sitk.WriteImage(written, str(tmp_path / name))
    response = client_for(team["manager"]).post(
        "/api/projects/imaging/volumes/",
        {
            "file": named("scan.nii.gz", (tmp_path / "scan.nii.gz").read_bytes()),
            "labels": named("labels.nii.gz", (tmp_path / "labels.nii.gz").read_bytes()),
        },
        format="multipart",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert "299 labels, more than the 256" in body["labels"][0], body
    assert not Series.objects.exists() and not Lesion.objects.exists()
    assert not [p for p in media_root.rglob("*") if p.is_file() and "pending-writes" not in str(p)]


def test_an_rtstruct_failing_after_its_first_roi_leaves_no_lesion(
    make_project: Callable[..., Project], tmp_path: Path, media_root: Path
) -> None:
    """ROIs are stored one at a time; one that fails later undoes those stored before it."""
    project = make_project("hostile")
    slices = write_ct_series(tmp_path / "series", count=4, size=16)
    path = tmp_path / "late.dcm"
    good, bad = square(slices[1], 1, 1, 4, 4), square(slices[2], 1, 1, 4, 4)
    ds = rtstruct_file(path, slices, {"GTV": [good], "node": [bad]})
    contour = ds.ROIContourSequence[1].ContourSequence[0]
    data = contour.get_item("ContourData").value
    raw_value(contour, "ContourData", "DS", b"nan" + data[data.index(b"\\") :])
    ds.save_as(path, enforce_file_format=True)
    report = studies_import(project=project, paths=[tmp_path / "series", path])
    assert report.imported_series == 1
    (outcome,) = [f for f in report.files if f.source.endswith("late.dcm")]
    assert outcome.status == "rejected", outcome
    assert "ROI 2 'node' contour 0: ContourData holds values that are not finite" in outcome.reason
    assert not Lesion.objects.exists() and not MaskVersion.objects.exists()
    assert not mask_files(media_root)
