"""DICOM SEG export on every kind of source: real files with empty elements, multi-frame
images, volumes imported from image files; read back by highdicom and checked by dciodvfy."""

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from annotator.models import Series
from projects.exports import export_round_files
from projects.intake.image_import import ImportedVolume
from projects.intake.ingest import studies_import
from projects.models import Project, Task
from projects.services import current_round
from tests.annotator.test_dicom_reading import write_ct_series
from tests.projects.test_export import _annotate
from tests.support.dciodvfy import assert_iod_valid, iod_errors, needs_dciodvfy

pytestmark = pytest.mark.django_db

DCMQI_CT = Path(__file__).resolve().parents[3] / "shared" / "data" / "dcmqi_ct3slice" / "ct-3slice"


@pytest.fixture
def project(make_project: Callable[..., Project], team: dict[str, Any]) -> Project:
    return make_project(
        "seg", manager=team["manager"], annotator=team["annotator"], reviewer=team["reviewer"]
    )


def _import(project: Project, folder: Path) -> Series:
    assert studies_import(project=project, paths=[folder]).imported_series == 1
    return Series.objects.get(study__project=project)


def _mask(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A blob that is not symmetric along any axis, with a hole: a flip or shift would show."""
    z, y, x = shape
    mask = np.zeros(shape, dtype=bool)
    mask[: max(1, z - 1), y // 5 : y // 2, x // 4 : (3 * x) // 4] = True
    mask[0, y // 5, x // 4] = False
    rng = np.random.default_rng(seed)
    mask &= rng.random(shape) < 0.9
    return mask


def _export(
    project: Project, team: dict[str, Any], masks: list[np.ndarray], tmp_path: Path
) -> tuple[Task, dict[str, Any], Path]:
    """Annotate the next task with ``masks``, accept it, export its SEG; the case and SEG path."""
    task = _annotate(team, project, [("tumour", m, "human") for m in masks])
    round_ = current_round(project)
    assert round_ is not None
    manifest = export_round_files(round_, tmp_path / "out", formats=("dicom-seg",))
    [case] = [c for c in manifest["cases"] if c["task"] == task.pk]
    assert manifest["skipped"] == [], manifest["skipped"]
    return task, case, tmp_path / "out" / "dicom-seg" / f"{case['case']}.dcm"


def _by_instance(seg_path: Path, series: Series, segments: int) -> np.ndarray:
    """The SEG's segments on the series' single-frame instances, in volume order (z, y, x, s)."""
    seg = hd.seg.segread(seg_path)
    uids = list(
        series.instances.order_by("frame_offset").values_list("sop_instance_uid", flat=True)
    )
    return np.asarray(
        seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            segment_numbers=list(range(1, segments + 1)),
            assert_missing_frames_are_empty=True,
        )
    ).astype(bool)


def _assert_read_back(pixels: np.ndarray, masks: list[np.ndarray]) -> None:
    assert pixels.shape[-1] == len(masks)
    for k, mask in enumerate(masks):
        np.testing.assert_array_equal(pixels[..., k], mask)


@pytest.mark.skipif(not DCMQI_CT.is_dir(), reason="the dcmqi example data is not here")
def test_the_dcmqi_example_with_empty_elements(
    project: Project, team: dict[str, Any], tmp_path: Path
) -> None:
    source = pydicom.dcmread(DCMQI_CT / "01.dcm", stop_before_pixels=True)
    assert source.SpecificCharacterSet == ""  # what highdicom refused to copy
    shutil.copytree(DCMQI_CT, tmp_path / "in")
    series = _import(project, tmp_path / "in")
    shape = series.volume.shape_zyx
    masks = [_mask(shape, 1), _mask(shape, 2)[:, ::-1]]
    _, case, path = _export(project, team, masks, tmp_path)
    _assert_read_back(_by_instance(path, series, 2), masks)
    seg = pydicom.dcmread(path)
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    assert seg.PatientID == source.PatientID and seg.StudyInstanceUID == source.StudyInstanceUID
    assert "PatientBirthDate" in seg and seg.PatientBirthDate == ""  # Type 2: kept, empty
    assert case["dicom_seg"]["sop_instance_uid"] == seg.SOPInstanceUID
    assert_iod_valid(path)


def test_a_source_with_an_empty_sop_class_and_invalid_type_2_values(
    project: Project, team: dict[str, Any], tmp_path: Path
) -> None:
    slices = write_ct_series(tmp_path / "in", count=3, size=16, seed=4)
    for s in slices:
        ds = pydicom.dcmread(s.path)
        ds.SOPClassUID = ""  # the file meta header still says CT Image Storage
        ds.SpecificCharacterSet = ""
        ds.PatientSex = "male"
        ds.StudyDate = "2024-01-02"
        ds.StudyDescription = ""
        ds.save_as(s.path)
    series = _import(project, tmp_path / "in")
    masks = [_mask(series.volume.shape_zyx, 3)]
    _, _, path = _export(project, team, masks, tmp_path)
    _assert_read_back(_by_instance(path, series, 1), masks)
    seg = pydicom.dcmread(path)
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPClassUID == (
        pydicom.uid.CTImageStorage
    )
    assert (seg.PatientSex, seg.StudyDate) == ("", "")
    assert "StudyDescription" not in seg
    assert_iod_valid(path)


def test_a_source_whose_class_is_unknown_is_refused_with_the_reason(
    project: Project, team: dict[str, Any], tmp_path: Path
) -> None:
    slices = write_ct_series(tmp_path / "in", count=2, size=8, seed=5)
    for s in slices:
        ds = pydicom.dcmread(s.path)
        ds.SOPClassUID = ""
        ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID("")
        ds.save_as(s.path, enforce_file_format=False)
    series = _import(project, tmp_path / "in")
    task = _annotate(team, project, [("tumour", _mask(series.volume.shape_zyx, 1), "human")])
    round_ = current_round(project)
    assert round_ is not None
    manifest = export_round_files(round_, tmp_path / "out", formats=("dicom-seg",))
    [skip] = manifest["skipped"]
    assert skip["case"] == f"r00_t{task.pk:06d}" and skip["format"] == "dicom-seg"
    assert "has no SOPClassUID (nor a MediaStorageSOPClassUID)" in skip["reason"]
    assert not (tmp_path / "out" / "dicom-seg").exists() or not any(
        (tmp_path / "out" / "dicom-seg").iterdir()
    )


def _legacy_enhanced_ct(folder: Path, out: Path) -> list[tuple[float, float, float]]:
    """The slices of ``folder`` as one Legacy Converted Enhanced CT object, frames in shuffled
    order; returns the volume's slice positions in volume order."""
    slices = write_ct_series(folder, count=5, size=16, seed=7)
    datasets = [pydicom.dcmread(s.path) for s in slices]
    for ds in datasets:
        ds.Manufacturer = "test"
    shuffled = [datasets[i] for i in (3, 0, 4, 1, 2)]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=shuffled,
        series_instance_uid=datasets[0].SeriesInstanceUID,
        series_number=3,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
    )
    out.mkdir(parents=True)
    enhanced.save_as(out / "enhanced.dcm", enforce_file_format=True)
    shutil.rmtree(folder)
    return [s.position for s in slices]


def test_a_multi_frame_source(project: Project, team: dict[str, Any], tmp_path: Path) -> None:
    positions = _legacy_enhanced_ct(tmp_path / "single", tmp_path / "in")
    series = _import(project, tmp_path / "in")
    [instance] = series.instances.all()
    assert instance.number_of_frames == 5
    masks = [_mask(series.volume.shape_zyx, 8), _mask(series.volume.shape_zyx, 9)[::-1]]
    _, _, path = _export(project, team, masks, tmp_path)

    source = pydicom.dcmread(tmp_path / "in" / "enhanced.dcm", stop_before_pixels=True)
    seg = hd.seg.segread(path)
    pixels = np.asarray(
        seg.get_pixels_by_source_frame(
            source_sop_instance_uid=instance.sop_instance_uid,
            source_frame_numbers=list(range(1, 6)),
            segment_numbers=[1, 2],
            assert_missing_frames_are_empty=True,
        )
    ).astype(bool)
    # Source frame k holds the slice at its position: the SEG's frame k must hold that slice.
    for k, frame in enumerate(source.PerFrameFunctionalGroupsSequence):
        x, y, z_mm = (float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
        z = positions.index((x, y, z_mm))
        for s, mask in enumerate(masks):
            np.testing.assert_array_equal(pixels[k, ..., s], mask[z])
    assert [int(z) for z in np.flatnonzero(masks[0].any(axis=(1, 2)))] != []
    assert_iod_valid(path)


def test_a_multi_frame_source_without_frame_positions_is_refused_with_the_reason(
    project: Project, team: dict[str, Any], tmp_path: Path
) -> None:
    source = get_testdata_file("emri_small.dcm")  # Enhanced MR, no functional groups
    assert isinstance(source, str)
    (tmp_path / "in").mkdir()
    shutil.copy(source, tmp_path / "in" / "emri.dcm")
    series = _import(project, tmp_path / "in")
    task = _annotate(team, project, [("tumour", _mask(series.volume.shape_zyx, 1), "human")])
    round_ = current_round(project)
    assert round_ is not None
    manifest = export_round_files(round_, tmp_path / "out", formats=("dicom-seg",))
    [skip] = manifest["skipped"]
    assert skip["case"] == f"r00_t{task.pk:06d}"
    assert "gives its frames no position" in skip["reason"]


@pytest.mark.parametrize("modality", ["CT", "MR", "US"])  # US: Secondary Capture instances
def test_a_volume_imported_from_nifti(
    project: Project,
    team: dict[str, Any],
    import_volume: Callable[[Project], ImportedVolume],
    tmp_path: Path,
    modality: str,
) -> None:
    project.modality = modality
    project.save()
    imported = import_volume(project)
    assert imported.series.generated and imported.series.modality == modality
    shape = imported.volume.shape_zyx
    masks = [np.zeros(shape, dtype=bool)]
    masks[0][10:14, 40:60, 30:50] = True
    masks[0][12, 40:45, 30:33] = False
    _, _, path = _export(project, team, masks, tmp_path)
    _assert_read_back(_by_instance(path, imported.series, 1), masks)
    seg = pydicom.dcmread(path)
    assert seg.FrameOfReferenceUID == imported.series.frame_of_reference_uid
    assert_iod_valid(path)


@needs_dciodvfy
def test_dciodvfy_is_strict_enough_to_fail(tmp_path: Path) -> None:
    """The checks above mean something: dciodvfy reports a CT slice without its Type 1 data."""
    [s] = write_ct_series(tmp_path / "in", count=1, size=8)
    ds = pydicom.dcmread(s.path)
    del ds.ImageOrientationPatient
    ds.save_as(tmp_path / "bad.dcm")
    assert any("ImageOrientationPatient" in line for line in iod_errors(tmp_path / "bad.dcm"))
