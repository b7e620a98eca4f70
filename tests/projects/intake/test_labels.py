"""Existing labels become lesions: RTSTRUCT / SEG / label maps on the series grid, then imported.

The real-data tests use ``../shared/data`` (skipped where it is absent) and print the Dice of each
pairing; measured when written (all 1.0000: the conversions agree voxel for voxel):
STS_001 CT / MR_T1 / PET RTSTRUCT vs NIfTI mask; LUNG1-001 RTSTRUCT vs the full-grid label map
(GTV-1, Spinal-Cord, Lung-Left, Lung-Right, with the label map's overlap rule: Lung-Left is
painted over the 5981 GTV-1 voxels inside it, so GTV-1 alone against label 1 is 0.9421);
dcmqi liver and partial-overlaps SEGs vs their NRRD label maps; TotalSegmentator label maps.
"""

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from skimage.draw import polygon as draw_polygon

from annotator.annotation import services
from annotator.annotation.services import mask_version_load
from annotator.core import storage
from annotator.core.errors import Conflict, InvalidInput
from annotator.imaging.dicom.labels import (
    EmptyLabelsError,
    FrameOfReferenceMismatch,
    GeometryMismatch,
    LabelError,
    LabelLimits,
    LabelMask,
    OtherSeriesError,
    TooLarge,
    label_image_masks,
    rtstruct_masks,
    seg_masks,
)
from annotator.imaging.dicom.labels.polygon import fill, row_crossings
from annotator.models import Lesion, MaskVersion
from inference.engine import Phantom, dice, key_slice_and_box
from inference.evaluation import DEFAULT_DATA
from projects.intake import label_import
from projects.intake.image_import import ImportedVolume
from projects.intake.label_import import labels_import
from projects.models import Project
from tests.annotator.test_dicom_reading import write_ct_series
from tests.annotator.test_hostile_labels import seg_file

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
    masks = list(rtstruct_masks(pydicom.dcmread(DATA / pair["seg_file"]), image, uids, notes=notes))
    assert [m.name for m in masks] == [pair["label_names"]["1"]]
    label = sitk.ReadImage(str(DATA / f"mirp/sts_images/STS_001/{modality}/nifti/mask/mask.nii.gz"))
    reference = sitk.GetArrayFromImage(label) > 0
    assert report(f"STS_001 {modality}", masks[0].name, masks[0].mask, reference) >= FLOOR


@needs_data
def test_lung1_rtstruct_matches_the_full_grid_label_map() -> None:
    pair = dicom_pairs()["nsclc_LUNG1-001"]
    image, uids = read_series(DATA / pair["image_dir"])
    masks = list(rtstruct_masks(pydicom.dcmread(DATA / pair["seg_file"]), image, uids))
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
    masks = list(seg_masks(pydicom.dcmread(base / seg_file), image, uids))
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
    masks = list(label_image_masks(label, image, names))
    array = sitk.GetArrayFromImage(label)
    assert [m.number for m in masks] == [int(v) for v in np.unique(array) if v]
    assert all(m.name == names[m.number] for m in masks)
    for m in masks:
        assert dice(m.mask, array == m.number) == 1.0
    # The same labels written with the y axis flipped (another direction and origin, the same
    # voxels): reordered exactly onto the series' grid.
    notes: list[str] = []
    flipped = list(
        label_image_masks(
            sitk.ReadImage(str(base / "example_seg_dicom.nii.gz")), image, names, notes=notes
        )
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
    masks = list(rtstruct_masks(ds, image, frame_of_reference_uid="1.2.3", notes=notes))
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
        list(rtstruct_masks(rtstruct({"far": [off_grid]}, "1.2.3"), image))


def test_label_image_geometry_and_emptiness_are_checked() -> None:
    image = grid()
    label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(image)
    with pytest.raises(EmptyLabelsError):
        label_image_masks(label, image, None)
    label[3, 4, 2] = 2
    masks = list(label_image_masks(label, image, {2: "node"}))
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
    result = labels_import(series=imported.series, masks=labels)
    lesions = result.created
    assert len(lesions) == len(labels) == 2
    # A label named as a project class takes it; any other gets the first class, and is listed.
    assert result.unmatched == ["liver lesion"]
    for lesion, label in zip(lesions, labels, strict=True):
        assert lesion.task == imported.task
        assert lesion.name == label.name
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


def test_label_names_map_to_classes_case_insensitively_with_separators_alike() -> None:
    project = Project(lesion_classes=[{"name": "Tumour"}, {"name": "spinal cord"}])
    assert project.lesion_class_named("TUMOUR") == "Tumour"
    assert project.lesion_class_named("Spinal_Cord") == "spinal cord"
    assert project.lesion_class_named(" spinal--cord ") == "spinal cord"
    assert project.lesion_class_named("spinalcord") is None
    assert project.lesion_class_named("Tumour 1") is None


@pytest.mark.django_db
def test_labels_import_with_a_source_makes_each_label_once(
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], ImportedVolume],
    phantom: Phantom,
) -> None:
    imported = import_volume(make_project("labels"))
    labels = phantom_labels(phantom)
    first = labels_import(series=imported.series, masks=labels, source="dicom:1.2.3")
    assert [lesion.import_key for lesion in first.created] == ["dicom:1.2.3#1", "dicom:1.2.3#2"]
    assert first.unchanged == []
    # the same labels again, as the same reference: nothing made, no conflict with themselves
    again = labels_import(
        series=imported.series, masks=labels, source="dicom:1.2.3", as_reference=True
    )
    assert again.created == [] and again.unchanged == first.created
    assert again.message().startswith("nothing new: 2 lesion(s) already imported")
    # one more label of the same object is new; another object's are all new
    extra = LabelMask("node", 3, labels[0].mask)
    more = labels_import(series=imported.series, masks=[*labels, extra], source="dicom:1.2.3")
    assert [lesion.name for lesion in more.created] == ["node"]
    assert more.created[0].lesion_class == "node" and more.unmatched == []
    other = labels_import(series=imported.series, masks=labels, source="dicom:9.9")
    assert len(other.created) == 2
    assert Lesion.objects.filter(task=imported.task).count() == 5
    with pytest.raises(InvalidInput, match="label number 1 is given twice"):
        labels_import(series=imported.series, masks=[labels[0], labels[0]], source="dicom:7")
    assert Lesion.objects.count() == 5


def stored_files(media_root: Path) -> list[Path]:
    """The data files under ``media_root``. A mask save's pending-write marker outlives a
    rolled-back import until the sweep (it then names a file already deleted): not data."""
    files = sorted(p for p in media_root.rglob("*") if p.is_file())
    markers = [p for p in files if storage.PENDING_PREFIX in p.relative_to(media_root).parts]
    for marker in markers:
        assert not (media_root / marker.read_text()).exists(), marker
    return [p for p in files if p not in markers]


@pytest.mark.django_db
def test_labels_import_is_all_or_nothing(
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], ImportedVolume],
    phantom: Phantom,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imported = import_volume(make_project("labels"))
    files_before = stored_files(media_root)
    good = phantom_labels(phantom)[0]
    bad: Sequence[LabelMask] = [good, LabelMask("wrong", 2, good.mask[:-1])]
    with pytest.raises(InvalidInput, match="shape"):
        labels_import(series=imported.series, masks=list(bad))
    empty = LabelMask("empty", 3, np.zeros_like(good.mask))
    with pytest.raises(InvalidInput, match="empty"):
        labels_import(series=imported.series, masks=[good, empty])
    assert not Lesion.objects.exists()
    assert stored_files(media_root) == files_before

    # Labels made one at a time: a generator that fails after the first was stored undoes it.
    def then_failing() -> Iterator[LabelMask]:
        yield good
        raise GeometryMismatch("frame 7 is elsewhere")

    with pytest.raises(GeometryMismatch):
        labels_import(series=imported.series, masks=then_failing())
    assert not Lesion.objects.exists() and not MaskVersion.objects.exists()
    assert stored_files(media_root) == files_before

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
    assert stored_files(media_root) == files_before

    lesions = labels_import(series=imported.series, masks=[good], as_reference=True).created
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


# --- rasterising contours: skimage's rule, in linear time --------------------------------------


def test_polygon_fill_covers_the_pixels_skimage_does() -> None:
    """The scanline fill gives skimage.draw.polygon's pixels (centre inside, on an edge or on a
    vertex) for random polygons: float, integer and half-integer vertices (centres exactly on
    edges), self-intersecting, partly or wholly off the grid."""
    rng = np.random.default_rng(17)
    for trial in range(1500):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        n = int(rng.integers(3, 12))
        low, high = (-4, -4), (shape[0] + 4, shape[1] + 4)
        if trial % 3 == 0:
            rows, cols = rng.uniform(low[0], high[0], n), rng.uniform(low[1], high[1], n)
        else:  # vertices on pixel centres or half way: edges through centres, vertices on them
            step = 1 if trial % 3 == 1 else 2
            rows = rng.integers(low[0] * step, high[0] * step, n) / step
            cols = rng.integers(low[1] * step, high[1] * step, n) / step
        ours = np.zeros(shape, dtype=bool)
        filled = fill(rows, cols, shape)
        if filled is not None:
            ours[filled[0], filled[1]] = filled[2]
        theirs = np.zeros(shape, dtype=bool)
        rr, cc = draw_polygon(rows, cols, shape=shape)
        theirs[rr, cc] = True
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{rows.tolist()} {cols.tolist()}")


def test_polygon_fill_time_grows_with_the_contour_not_area_times_points() -> None:
    """A 10,000-point outline of a 512 x 512 slice: skimage takes about 16 s, O(area x points)."""
    angles = np.linspace(0, 2 * np.pi, 10_000, endpoint=False)
    rows, cols = 256 + 250 * np.sin(angles), 256 + 250 * np.cos(angles)
    start = time.perf_counter()
    filled = fill(rows, cols, (512, 512))
    assert time.perf_counter() - start < 0.5
    assert filled is not None
    area = int(filled[2].sum())
    assert abs(area - np.pi * 250**2) < 0.01 * np.pi * 250**2
    assert row_crossings(rows, 512) == 2 * 2 * 500  # two edges per row, both parities


# --- limits: nothing allocated for what an object declares -------------------------------------


def test_rtstruct_limits_on_points_contours_and_rasterising_work() -> None:
    image = grid()
    ds = rtstruct({"a": [square(-8, -6, 1, 3, 102)], "b": [square(0, 0, 2, 2, 103)] * 3}, "1.2.3")
    assert len(list(rtstruct_masks(ds, image))) == 2
    with pytest.raises(TooLarge, match=r"more than 12 points.*ANNOTATOR_MAX_CONTOUR_POINTS"):
        list(rtstruct_masks(ds, image, limits=LabelLimits(max_contour_points=12)))
    with pytest.raises(TooLarge, match="holds 4 points, more than the 3 a contour may hold"):
        list(rtstruct_masks(ds, image, limits=LabelLimits(max_points_per_contour=3)))
    with pytest.raises(TooLarge, match="more than 3 contours"):
        list(rtstruct_masks(ds, image, limits=LabelLimits(max_contours=3)))
    with pytest.raises(TooLarge, match="cross the grid's rows more than 20 times"):
        list(rtstruct_masks(ds, image, limits=LabelLimits(max_row_crossings=20)))
    # More ROIs than the cap: refused when called, before any contour is read.
    with pytest.raises(TooLarge, match=r"more than 1 ROIs.*ANNOTATOR_MAX_LABELS"):
        rtstruct_masks(ds, image, limits=LabelLimits(max_labels=1))


def test_rtstruct_masks_come_one_at_a_time_and_bad_numbers_are_refused() -> None:
    image = grid()
    ds = rtstruct({"good": [square(-8, -6, 1, 3, 102)], "bad": [square(0, 0, 2, 2, 103)]}, "1.2.3")
    ds.ROIContourSequence[1].ContourSequence[0].ContourData[4] = float("nan")
    masks = rtstruct_masks(ds, image)
    first = next(masks)  # the first ROI is made before the second is read
    assert first.name == "good" and first.mask.sum() == 100
    with pytest.raises(LabelError, match=r"ROI 2 'bad' contour 0: .*not finite"):
        next(masks)


def test_seg_reading_checks_its_frames_before_any_pixel(tmp_path: Path) -> None:
    """A SEG (written here) whose frames are larger than the series' slices, or whose frames
    name more segments than the cap, is refused when called: nothing decoded."""
    slices = write_ct_series(tmp_path / "series", count=3, size=8)
    image, uids = read_series(slices[0].path.parent)
    frames = [(k, k + 1, np.eye(8, dtype=bool)) for k in range(3)]
    path = tmp_path / "three.seg"
    seg_file(path, slices, frames, {1: "a", 2: "b", 3: "c"})
    masks = list(seg_masks(pydicom.dcmread(path), image, uids))
    assert [(m.name, int(m.mask.sum()), int(m.mask[m.number - 1].sum())) for m in masks] == [
        ("a", 8, 8),
        ("b", 8, 8),
        ("c", 8, 8),
    ]
    with pytest.raises(TooLarge, match="declares more than 2 segments"):
        seg_masks(pydicom.dcmread(path), image, uids, limits=LabelLimits(max_labels=2))
    seg_file(path, slices, frames, {1: "a"})  # segments 2 and 3 are named by frames only
    with pytest.raises(TooLarge, match="frames reference more than 2 segments"):
        seg_masks(pydicom.dcmread(path), image, uids, limits=LabelLimits(max_labels=2))
    names = [m.name for m in seg_masks(pydicom.dcmread(path), image, uids)]
    assert names == ["a", "segment 2", "segment 3"]
    small, _ = read_series(slices[0].path.parent)
    cropped = sitk.RegionOfInterest(small, [4, 8, 3], [0, 0, 0])
    with pytest.raises(GeometryMismatch, match="larger than the reference series' slices"):
        seg_masks(pydicom.dcmread(path), cropped, uids)


def test_a_labelmap_seg_gives_each_declared_value_its_mask(tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "series", count=3, size=8)
    image, uids = read_series(slices[0].path.parent)
    planes = [np.zeros((8, 8), np.uint8) for _ in range(3)]
    planes[0][1:3, 1:3] = 1
    planes[1][4:7, 2:5] = 2
    planes[2][0, 0] = 9  # not a declared segment: noted, not imported
    path = tmp_path / "labelmap.seg"
    frames = [(k, 0, plane) for k, plane in enumerate(planes)]
    seg_file(path, slices, frames, {1: "liver", 2: "spleen", 3: "kidney"}, labelmap=True)
    notes: list[str] = []
    masks = list(seg_masks(pydicom.dcmread(path), image, uids, notes=notes))
    expected = np.stack(planes)
    assert [m.name for m in masks] == ["liver", "spleen"]
    for m in masks:
        np.testing.assert_array_equal(m.mask, expected == m.number)
    assert any("[9]" in n for n in notes) and any("kidney" in n for n in notes)


def test_a_label_image_with_more_values_than_the_cap_is_refused() -> None:
    image = grid()
    array = np.arange(5 * 16 * 20, dtype=np.uint16).reshape(5, 16, 20) % 300
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    with pytest.raises(TooLarge, match="holds 299 labels, more than the 256"):
        label_image_masks(label, image)
    assert len(list(label_image_masks(label, image, limits=LabelLimits(max_labels=300)))) == 299


@pytest.mark.django_db
def test_labels_import_refuses_more_labels_than_the_setting(
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], ImportedVolume],
    phantom: Phantom,
    settings: Any,
) -> None:
    settings.MAX_LABELS = 1
    imported = import_volume(make_project("labels"))
    with pytest.raises(InvalidInput, match=r"more than 1 labels.*ANNOTATOR_MAX_LABELS"):
        labels_import(series=imported.series, masks=phantom_labels(phantom))
    assert not Lesion.objects.exists() and not MaskVersion.objects.exists()


@pytest.mark.parametrize("kind", ["BINARY", "FRACTIONAL", "LABELMAP"])
def test_highdicom_written_segs_read_back_voxel_for_voxel(kind: str, tmp_path: Path) -> None:
    """highdicom (the reference SEG writer) encodes each kind; we read back what it was given
    (BINARY segments overlapping, FRACTIONAL probabilities cut at one half)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    slices = write_ct_series(tmp_path / "series", count=4, size=12)
    image, uids = read_series(tmp_path / "series")
    sources = [pydicom.dcmread(s.path) for s in slices]
    for source in sources:  # Type 2 attributes highdicom copies; DICOM allows them empty
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID"):
            setattr(source, keyword, None)
        source.StudyTime, source.SliceThickness = "120000", "2.5"
    rng = np.random.default_rng(3)
    truth = np.zeros((4, 12, 12, 3), dtype=bool)
    truth[1:3, 2:7, 3:9, 0] = True
    truth[2:4, 5:10, 1:6, 1] = True  # overlaps segment 1 on slice 2
    truth[0, :, :, 2] = rng.random((12, 12)) > 0.6
    if kind == "LABELMAP":
        truth[..., 1] &= ~truth[..., 0]  # a label map holds one label per voxel
        pixels: np.ndarray = np.argmax(truth, axis=-1).astype(np.uint8) + 1
        pixels[~truth.any(axis=-1)] = 0
    elif kind == "FRACTIONAL":
        pixels = np.where(truth, 0.75, 0.25).astype(np.float32)
    else:
        pixels = truth
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=getattr(hd.seg.SegmentationTypeValues, kind),
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=f"organ {n}",
                segmented_property_category=codes.SCT.Tissue,
                segmented_property_type=codes.SCT.Tissue,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
            for n in (1, 2, 3)
        ],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(tmp_path / "seg.dcm")
    masks = list(seg_masks(pydicom.dcmread(tmp_path / "seg.dcm"), image, uids))
    assert [m.name for m in masks] == ["organ 1", "organ 2", "organ 3"]
    for m in masks:
        np.testing.assert_array_equal(m.mask, truth[..., m.number - 1], err_msg=m.name)
