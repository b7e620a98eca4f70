"""Existing labels become lesions: RTSTRUCT / SEG / label maps on the series grid, then imported.

The real-data tests use ``../shared/data`` (skipped where it is absent) and print the Dice of each
pairing; measured when written (all 1.0000: the conversions agree voxel for voxel):
STS_001 CT / MR_T1 / PET RTSTRUCT vs NIfTI mask; LUNG1-001 RTSTRUCT vs the full-grid label map
(GTV-1, Spinal-Cord, Lung-Left, Lung-Right, with the label map's overlap rule: Lung-Left is
painted over the 5981 GTV-1 voxels inside it, so GTV-1 alone against label 1 is 0.9421);
dcmqi liver and partial-overlaps SEGs vs their NRRD label maps; TotalSegmentator label maps.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from annotator import label_import, services
from annotator.dicom.labels import (
    EmptyLabelsError,
    FrameOfReferenceMismatch,
    GeometryMismatch,
    LabelMask,
    OtherSeriesError,
    label_image_masks,
    rtstruct_masks,
    seg_masks,
)
from annotator.errors import Conflict, InvalidInput
from annotator.label_import import labels_import
from annotator.models import Lesion, MaskVersion
from annotator.services import mask_version_load
from annotator.volumes import ImportedVolume
from inference.engine import Phantom, dice, key_slice_and_box
from inference.evaluation import DEFAULT_DATA
from projects.models import Project

DATA = DEFAULT_DATA
FLOOR = 0.99
needs_data = pytest.mark.skipif(
    not (DATA / "pairs.json").exists(), reason=f"real data not available at {DATA}"
)


def read_series(directory: Path) -> tuple[sitk.Image, list[str]]:
    """A DICOM series as one image, and its slices' SOP Instance UIDs in z order."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(directory))
    reader.SetFileNames(files)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    return reader.Execute(), uids


def dicom_pairs() -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in json.loads((DATA / "pairs.json").read_text())["dicom"]}


def report(pairing: str, name: str, ours: np.ndarray, reference: np.ndarray) -> float:
    score = dice(ours, reference)
    print(
        f"{pairing} {name}: Dice {score:.4f} ({int(ours.sum())} vs {int(reference.sum())} voxels)"
    )
    return score


# --- real data -------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_sts_rtstruct_matches_its_nifti_mask(modality: str) -> None:
    pair = dicom_pairs()[f"sts_STS_001_{modality}"]
    image, uids = read_series(DATA / pair["image_dir"])
    notes: list[str] = []
    masks = rtstruct_masks(pydicom.dcmread(DATA / pair["seg_file"]), image, uids, notes=notes)
    assert [m.name for m in masks] == [pair["label_names"]["1"]]
    label = sitk.ReadImage(str(DATA / f"mirp/sts_images/STS_001/{modality}/nifti/mask/mask.nii.gz"))
    reference = sitk.GetArrayFromImage(label) > 0
    assert report(f"STS_001 {modality}", masks[0].name, masks[0].mask, reference) >= FLOOR


@needs_data
def test_lung1_rtstruct_matches_the_full_grid_label_map() -> None:
    pair = dicom_pairs()["nsclc_LUNG1-001"]
    image, uids = read_series(DATA / pair["image_dir"])
    masks = rtstruct_masks(pydicom.dcmread(DATA / pair["seg_file"]), image, uids)
    names = json.loads((DATA / "mirp/nifti/LUNG1-001_rtstruct_labels.json").read_text())
    number = {name: int(value) for value, name in names.items()}
    assert sorted(m.name for m in masks) == sorted(names.values())
    labels = sitk.GetArrayFromImage(
        sitk.ReadImage(str(DATA / "mirp/nifti/LUNG1-001_rtstruct_labels.nii.gz"))
    )
    # The label map holds one label per voxel, later labels painted over earlier ones (the
    # tumour lies partly inside the left lung contour): paint ours the same way to compare.
    ours = np.zeros_like(labels)
    for m in sorted(masks, key=lambda m: number[m.name]):
        ours[m.mask] = number[m.name]
    for m in masks:
        value = number[m.name]
        assert report("LUNG1-001", m.name, ours == value, labels == value) >= FLOOR
    gtv = next(m for m in masks if m.name == "GTV-1").mask
    report("LUNG1-001 (unpainted)", "GTV-1", gtv, labels == number["GTV-1"])
    assert not np.any((labels == number["GTV-1"]) & ~gtv)  # every reference GTV voxel is ours


@needs_data
@pytest.mark.parametrize(
    ("seg_file", "label_files"),
    [
        ("liver.dcm", ["liver_seg.nrrd"]),
        ("partial_overlaps.dcm", [f"partial_overlaps-{i}.nrrd" for i in (1, 2, 3)]),
    ],
)
def test_dcmqi_seg_matches_its_label_maps(seg_file: str, label_files: list[str]) -> None:
    base = DATA / "dcmqi_ct3slice"
    image, uids = read_series(base / "ct-3slice")
    masks = seg_masks(pydicom.dcmread(base / seg_file), image, uids)
    # Segment n was made from the voxels of value n in one of the label maps; they overlap.
    arrays = [sitk.GetArrayFromImage(sitk.ReadImage(str(base / f))) for f in label_files]
    assert sorted(m.number for m in masks) == sorted(
        int(v) for a in arrays for v in np.unique(a) if v
    )
    for m in masks:
        reference = np.any([a == m.number for a in arrays], axis=0)
        assert report(f"dcmqi {seg_file}", m.name, m.mask, reference) >= FLOOR
    if seg_file == "partial_overlaps.dcm":
        stacked = np.sum([m.mask for m in masks], axis=0)
        assert stacked.max() > 1  # overlapping segments each keep their own voxels


@needs_data
def test_a_seg_of_another_series_is_refused() -> None:
    base = DATA / "dcmqi_ct3slice"
    image, uids = read_series(base / "ct-3slice")
    with pytest.raises(OtherSeriesError, match="another series"):
        seg_masks(pydicom.dcmread(base / "liver.dcm"), image, [u + ".9" for u in uids])
    with pytest.raises(FrameOfReferenceMismatch, match="frame of reference"):
        seg_masks(pydicom.dcmread(base / "liver.dcm"), image, uids, frame_of_reference_uid="1.2.3")


@needs_data
def test_totalsegmentator_label_map_on_its_dicom_series() -> None:
    base = DATA / "totalsegmentator"
    image, _ = read_series(base / "example_ct_dicom")
    names = {
        int(k): v
        for k, v in json.loads((base / "label_names.json").read_text())["example_seg_dicom"].items()
    }
    label = sitk.ReadImage(str(base / "example_seg_dicom_on_dicom_grid.nii.gz"))
    masks = label_image_masks(label, image, names)
    array = sitk.GetArrayFromImage(label)
    assert [m.number for m in masks] == [int(v) for v in np.unique(array) if v]
    assert all(m.name == names[m.number] for m in masks)
    for m in masks:
        assert dice(m.mask, array == m.number) == 1.0
    # The same labels written with the y axis flipped (another direction and origin, the same
    # voxels): reordered exactly onto the series' grid.
    notes: list[str] = []
    flipped = label_image_masks(
        sitk.ReadImage(str(base / "example_seg_dicom.nii.gz")), image, names, notes=notes
    )
    assert notes
    scores = [
        report("TotalSegmentator flipped", f.name, f.mask, m.mask)
        for f, m in zip(flipped, masks, strict=True)
    ]
    assert min(scores) >= FLOOR
    # A label map of another grid (the resampled 3 mm CT) is refused, not silently misplaced.
    with pytest.raises(GeometryMismatch):
        label_image_masks(sitk.ReadImage(str(base / "example_seg.nii.gz")), image, names)


# --- synthetic ---------------------------------------------------------------------------------


def grid(size: tuple[int, int, int] = (20, 16, 5)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((-10.0, -8.0, 100.0))
    return image


def rtstruct(contours: dict[str, list[list[tuple[float, float, float]]]], uid: str) -> Dataset:
    ds = Dataset()
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    for number, (name, polygons) in enumerate(contours.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = uid
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = DicomSequence()
        for points in polygons:
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [float(v) for p in points for v in p]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
    return ds


def square(
    x0: float, y0: float, x1: float, y1: float, z: float
) -> list[tuple[float, float, float]]:
    return [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]


def test_rtstruct_holes_islands_and_off_grid_contours() -> None:
    image = grid()
    # Index (i, j, k) has its centre at (-10 + i, -8 + j, 100 + 2k).
    outer = square(-8, -6, 1, 3, 102)  # columns 2..11, rows 2..11 of slice 1
    hole = square(-6, -4, -1, 1, 102)  # columns 4..9, rows 4..9, drawn the other way round
    island = square(-5, -3, -3, -1, 102)[::-1]  # columns 5..7, rows 5..7
    off_grid = square(-8, -6, 1, 3, 140)  # slice 20: beyond the 5 slices
    ds = rtstruct(
        {"tumour": [outer, hole, island, off_grid], "empty": [], "node": [square(0, 0, 2, 2, 103)]},
        "1.2.3",
    )
    notes: list[str] = []
    masks = rtstruct_masks(ds, image, frame_of_reference_uid="1.2.3", notes=notes)
    assert [(m.name, m.number) for m in masks] == [("tumour", 1), ("node", 3)]
    tumour = masks[0].mask
    expected = np.zeros((5, 16, 20), dtype=bool)
    expected[1, 2:12, 2:12] = True
    expected[1, 4:10, 4:10] = False
    expected[1, 5:8, 5:8] = True
    np.testing.assert_array_equal(tumour, expected)
    # z = 103 lies half way between slices 1 (102) and 2 (104): still within half a gap.
    assert masks[1].mask.sum() == 9
    assert any("no contour" in n and "empty" in n for n in notes)
    assert any("half a slice gap" in n for n in notes)

    with pytest.raises(FrameOfReferenceMismatch, match="frame of reference"):
        rtstruct_masks(ds, image, frame_of_reference_uid="9.9.9")
    with pytest.raises(EmptyLabelsError):
        rtstruct_masks(rtstruct({"far": [off_grid]}, "1.2.3"), image)


def test_label_image_geometry_and_emptiness_are_checked() -> None:
    image = grid()
    label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(image)
    with pytest.raises(EmptyLabelsError):
        label_image_masks(label, image, None)
    label[3, 4, 2] = 2
    masks = label_image_masks(label, image, {2: "node"})
    assert [(m.name, m.number, int(m.mask.sum())) for m in masks] == [("node", 2, 1)]
    assert masks[0].mask[2, 4, 3]
    shifted = sitk.Image(label)
    shifted.SetOrigin((-9.5, -8.0, 100.0))
    with pytest.raises(GeometryMismatch, match="origin"):
        label_image_masks(shifted, image, None)
    other = sitk.Image((20, 16, 4), sitk.sitkUInt8)
    with pytest.raises(GeometryMismatch, match="size"):
        label_image_masks(other, image, None)


# --- the Django service ------------------------------------------------------------------------


def phantom_labels(phantom: Phantom) -> list[LabelMask]:
    return [
        LabelMask(name, i, mask)
        for i, (name, mask) in enumerate(
            zip(["tumour", "liver lesion"], phantom.lesion_masks, strict=False), start=1
        )
    ]


@pytest.mark.django_db
def test_labels_import_creates_lesions_with_import_masks(
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], ImportedVolume],
    phantom: Phantom,
) -> None:
    project = make_project("labels")
    imported = import_volume(project)
    labels = phantom_labels(phantom)
    lesions = labels_import(series=imported.series, masks=labels)
    assert len(lesions) == len(labels) == 2
    for lesion, label in zip(lesions, labels, strict=True):
        assert lesion.task == imported.task
        # A project class keeps its name; any other label gets the project's first class.
        assert lesion.lesion_class == "tumour"
        k, box = key_slice_and_box(label.mask)
        assert (lesion.key_slice, lesion.box) == (k, list(box))
        areas = label.mask.sum(axis=(1, 2))
        assert areas[k] == areas.max()
        x0, y0, x1, y1 = box
        on_slice = label.mask[k]
        assert on_slice[y0 : y1 + 1, x0 : x1 + 1].sum() == on_slice.sum()
        (version,) = lesion.mask_versions.all()
        assert version.source == MaskVersion.Source.IMPORT
        assert version.parent is None and version.author_backend == "import"
        assert version.voxel_count == int(label.mask.sum())
        np.testing.assert_array_equal(mask_version_load(version), label.mask)

    # A reference must stand alone: refused once the task has lesions, and nothing is added.
    with pytest.raises(Conflict):
        labels_import(series=imported.series, masks=labels, as_reference=True)
    assert Lesion.objects.filter(task=imported.task).count() == 2


@pytest.mark.django_db
def test_labels_import_is_all_or_nothing(
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], ImportedVolume],
    phantom: Phantom,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imported = import_volume(make_project("labels"))
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())
    good = phantom_labels(phantom)[0]
    bad: Sequence[LabelMask] = [good, LabelMask("wrong", 2, good.mask[:-1])]
    with pytest.raises(InvalidInput, match="shape"):
        labels_import(series=imported.series, masks=list(bad))
    empty = LabelMask("empty", 3, np.zeros_like(good.mask))
    with pytest.raises(InvalidInput, match="empty"):
        labels_import(series=imported.series, masks=[good, empty])
    assert not Lesion.objects.exists()
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before

    # A failure after the first mask was stored: its file goes too.
    calls: list[int] = []

    def failing_second(**kwargs: Any) -> MaskVersion:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("storage down")
        return services.mask_version_save(**kwargs)

    monkeypatch.setattr(label_import, "mask_version_save", failing_second)
    with pytest.raises(RuntimeError, match="storage down"):
        labels_import(series=imported.series, masks=phantom_labels(phantom))
    monkeypatch.undo()
    assert len(calls) == 2
    assert not Lesion.objects.exists() and not MaskVersion.objects.exists()
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before

    lesions = labels_import(series=imported.series, masks=[good], as_reference=True)
    (version,) = lesions[0].mask_versions.all()
    assert version.author_backend == "import:reference"


@needs_data
@pytest.mark.parametrize("seg_file", ["liver.dcm", "partial_overlaps.dcm"])
def test_seg_reading_agrees_with_highdicom(seg_file: str) -> None:
    """highdicom, the reference SEG implementation, reads the same voxels per segment."""
    import highdicom as hd

    base = DATA / "dcmqi_ct3slice"
    image, uids = read_series(base / "ct-3slice")
    ours = {m.number: m.mask for m in seg_masks(pydicom.dcmread(base / seg_file), image, uids)}
    seg = hd.seg.segread(base / seg_file)
    theirs = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=sorted(ours),
        ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
    )
    for index, number in enumerate(sorted(ours)):
        np.testing.assert_array_equal(ours[number], theirs[..., index] > 0)
