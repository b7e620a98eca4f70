"""Every file of pydicom's test corpus (the pydicom-data package), file by file and as a batch.

The table says what each file must become on its own: a series of N frames, or a rejection
(or a label object) with a reason. The batch import through the Django service then checks that
rejected input leaves no rows and no stored files behind.
"""

import importlib.resources
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from django.core.files.storage import default_storage

from annotator.imaging.dicom import IMAGE, LABEL, REJECTED, ScanResult, scan
from annotator.models import Instance, Series, Volume
from projects.intake.ingest import ALREADY_IMPORTED, IMPORTED, studies_import
from projects.models import Project

NOT_DICOM = "not a DICOM file: no DICOM preamble and meta header"
TRUNCATED = "truncated file: End of file reached before delimiter (FFFE,E0DD)"
LABEL_OBJECT = "label object, imported with labels"
ZERO_SPACING = "PixelSpacing 0\\0 is not > 0"
BAD_UID = "StudyInstanceUID '05fa52f0e599f17b8186ff18fcdf2b55"  # a hex digest: not a UID

# file name -> number of frames of its series, or (status, reason substring)
EXPECTED: dict[str, int | tuple[str, str]] = {
    "693_J2KR.dcm": 1,  # CT, JPEG 2000 lossless
    "693_UNCI.dcm": 1,
    "693_UNCR.dcm": 1,
    "JPEG-LL.dcm": 1,  # NM secondary capture, JPEG lossless
    "JPEG2000_UNC.dcm": 1,
    "JPGLosslessP14SV1_1s_1f_8b.dcm": 1,  # a single ultrasound frame
    "MR-SIEMENS-DICOM-WithOverlays.dcm": 1,
    "MR2_J2KI.dcm": 1,  # JPEG 2000 (lossy)
    "MR2_J2KR.dcm": 1,
    "MR2_UNCI.dcm": 1,
    "MR2_UNCR.dcm": 1,
    "OBXXXX1A.dcm": 1,  # ultrasound, PALETTE COLOR
    "OBXXXX1A_2frame.dcm": 2,
    "OBXXXX1A_expb.dcm": 1,  # big endian
    "OBXXXX1A_expb_2frame.dcm": 2,
    "OBXXXX1A_rle.dcm": 1,  # RLE
    "OBXXXX1A_rle_2frame.dcm": 2,
    "OT-PAL-8-face.dcm": (REJECTED, NOT_DICOM),  # ACR-NEMA style: no meta header
    # CR, MONOCHROME1; PixelSpacing 0\\0 and no ImagerPixelSpacing: no usable spacing
    "RG1_J2KI.dcm": (REJECTED, ZERO_SPACING),
    "RG1_J2KR.dcm": (REJECTED, ZERO_SPACING),
    "RG1_UNCI.dcm": (REJECTED, ZERO_SPACING),
    "RG1_UNCR.dcm": (REJECTED, ZERO_SPACING),
    "RG3_J2KI.dcm": 1,
    "RG3_J2KR.dcm": 1,
    "RG3_UNCI.dcm": 1,
    "RG3_UNCR.dcm": 1,
    "SC_rgb.dcm": 1,  # RGB secondary capture -> grey luminance
    "SC_rgb_16bit.dcm": 1,
    "SC_rgb_16bit_2frame.dcm": 2,
    "SC_rgb_2frame.dcm": 2,
    "SC_rgb_32bit.dcm": 1,
    "SC_rgb_32bit_2frame.dcm": 2,
    "SC_rgb_dcmtk_ebcr_dcmd.dcm": 1,  # JPEG-decoded by dcmtk, stored uncompressed
    "SC_rgb_dcmtk_ebcyn1_dcmd.dcm": 1,
    "SC_rgb_dcmtk_ebcyn2_dcmd.dcm": 1,
    "SC_rgb_dcmtk_ebcynp_dcmd.dcm": 1,
    "SC_rgb_dcmtk_ebcys2_dcmd.dcm": 1,
    "SC_rgb_dcmtk_ebcys4_dcmd.dcm": 1,
    "SC_rgb_expb.dcm": 1,
    "SC_rgb_expb_16bit.dcm": 1,
    "SC_rgb_expb_16bit_2frame.dcm": 2,
    "SC_rgb_expb_2frame.dcm": 2,
    "SC_rgb_expb_32bit.dcm": 1,
    "SC_rgb_expb_32bit_2frame.dcm": 2,
    "SC_rgb_gdcm2k_uncompressed.dcm": 1,
    "SC_ybr_full_uncompressed.dcm": 1,  # YBR_FULL
    "US1_J2KI.dcm": 1,  # YBR_ICT
    "US1_J2KR.dcm": 1,  # YBR_RCT
    "US1_UNCI.dcm": 1,
    "US1_UNCR.dcm": 1,
    # CT, JPEG lossless, a malformed sequence; its UIDs are hex digests, not UIDs
    "bad_sequence.dcm": (REJECTED, BAD_UID),
    "color-pl.dcm": 1,  # RGB, planar configuration 1
    "color-px.dcm": 1,
    "color3d_jpeg_baseline.dcm": 120,  # ultrasound cine, JPEG baseline YBR_FULL_422
    "eCT_Supplemental.dcm": 2,  # enhanced CT: per-frame positions
    "emri_small.dcm": 10,  # enhanced MR
    "emri_small_RLE.dcm": 10,
    "emri_small_big_endian.dcm": 10,
    "emri_small_jpeg_2k_lossless.dcm": 10,
    "emri_small_jpeg_2k_lossless_too_short.dcm": (REJECTED, TRUNCATED),
    "emri_small_jpeg_ls_lossless.dcm": 10,  # JPEG-LS
    "explicit_VR-UN.dcm": 1,
    "gdcm-US-ALOKA-16.dcm": 1,  # 16-bit PALETTE COLOR
    "gdcm-US-ALOKA-16_big.dcm": 1,
    "liver.dcm": (LABEL, LABEL_OBJECT),  # SEG
    "liver_expb.dcm": (LABEL, LABEL_OBJECT),
    "mlut_18.dcm": 1,  # a Modality LUT Sequence
    "vlut_04.dcm": 1,
}


def corpus_folder() -> Path:
    return Path(str(importlib.resources.files("data_store") / "data"))


def corpus_files() -> list[Path]:
    return sorted(p for p in corpus_folder().iterdir() if p.is_file())


@pytest.fixture(scope="module")
def scanned_one_by_one(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScanResult]:
    workdir = tmp_path_factory.mktemp("corpus")
    return {p.name: scan([p], workdir=workdir, display_names={p: p.name}) for p in corpus_files()}


def test_the_table_covers_every_file_of_the_corpus() -> None:
    assert sorted(p.name for p in corpus_files()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corpus_file_on_its_own(name: str, scanned_one_by_one: dict[str, ScanResult]) -> None:
    result = scanned_one_by_one[name]
    (outcome,) = result.files
    expected = EXPECTED[name]
    if isinstance(expected, int):
        assert (outcome.status, outcome.reason) == (IMAGE, "")
        (series,) = result.series
        assert series.error == "" and series.image is not None
        assert series.image.GetSize()[2] == expected == series.number_of_slices
        assert series.image.GetPixelID() in (sitk.sitkInt16, sitk.sitkFloat32)
    else:
        status, reason = expected
        assert outcome.status == status and reason in outcome.reason, outcome.reason
        assert all(s.image is None for s in result.series)
    if status_is_label(expected):
        (label,) = result.labels
        assert label.sop_class_name == "Segmentation Storage" and label.path.name == name


def status_is_label(expected: int | tuple[str, str]) -> bool:
    return isinstance(expected, tuple) and expected[0] == LABEL


def test_colour_becomes_luminance(scanned_one_by_one: dict[str, ScanResult]) -> None:
    (series,) = scanned_one_by_one["SC_rgb.dcm"].series
    assert series.image is not None
    rgb = pydicom.dcmread(corpus_folder() / "SC_rgb.dcm").pixel_array.astype(float)
    luma = np.rint(rgb @ [0.299, 0.587, 0.114])
    np.testing.assert_allclose(sitk.GetArrayFromImage(series.image)[0], luma, atol=1)


def test_enhanced_ct_frames_follow_their_positions(
    scanned_one_by_one: dict[str, ScanResult],
) -> None:
    (series,) = scanned_one_by_one["eCT_Supplemental.dcm"].series
    assert series.image is not None
    ds = pydicom.dcmread(corpus_folder() / "eCT_Supplemental.dcm")
    positions = [
        [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    orientation = series.instances[0].frames[0].orientation
    assert orientation is not None
    normal = np.cross(orientation[:3], orientation[3:])
    first = min(positions, key=lambda p: float(np.dot(p, normal)))
    np.testing.assert_allclose(series.image.GetOrigin(), first)


@pytest.mark.django_db
def test_the_whole_corpus_through_the_service(
    make_project: Callable[..., Project], media_root: Path
) -> None:
    project = make_project("corpus")
    folder = corpus_folder()
    report = studies_import(project=project, paths=[folder], display_names={folder: "data"})
    counts = report.counts()
    # As a batch, the corpus holds the same objects in several encodings (same SOPInstanceUID:
    # duplicates) and different objects at one position (693_*, MR2_*: those series are refused),
    # RG1_* has a zero PixelSpacing (its series is refused) and bad_sequence.dcm invalid UIDs.
    assert counts == {
        "files": 68,
        "files duplicate": 28,
        "files imported": 27,
        "files rejected": 13,
        "series": 18,
        "series imported": 15,
        "series rejected": 3,
        # the two SEG objects (below): refused, so no lesion
        "lesions created": 0,
        "lesions unchanged": 0,
    }, report.to_dict()["series"]
    assert all(f.reason for f in report.files if f.status != IMPORTED)
    # The SEG objects refer to a series the corpus does not hold: refused with that reason.
    for name in ("liver.dcm", "liver_expb.dcm"):
        (outcome,) = [f for f in report.files if f.source == f"data/{name}"]
        assert outcome.status == REJECTED and "is in the project" in outcome.reason
    rejected_series = {s.series_instance_uid for s in report.series if s.status == REJECTED}
    assert not Series.objects.filter(series_instance_uid__in=rejected_series).exists()
    for outcome in report.rejected_files:
        if outcome.sop_instance_uid:
            assert not Instance.objects.filter(sop_instance_uid=outcome.sop_instance_uid).exists()
    # Every stored file is named by a row, and every row's file is there: no orphans. Besides
    # them: each imported series' DICOMweb metadata, built at import, in its derived folder.
    stored = {p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file()}
    named = set(Instance.objects.values_list("storage_key", flat=True)) | set(
        Volume.objects.values_list("storage_key", flat=True)
    )
    # The colour series (RGB, YBR_*, PALETTE COLOR) also keep their RGB values.
    colour = set(
        Volume.objects.exclude(colour_storage_key="").values_list("colour_storage_key", flat=True)
    )
    assert len(colour) == 6
    named |= colour
    derived = {key for key in stored if "/derived/dicomweb-metadata-" in key}
    assert stored - derived == named
    prefixes = {s.original_prefix.removesuffix("original/") for s in Series.objects.all()}
    assert {key.split("derived/")[0] for key in derived} == prefixes
    for outcome in report.files:
        if outcome.status == IMPORTED:
            instance = Instance.objects.get(sop_instance_uid=outcome.sop_instance_uid)
            with default_storage.open(instance.storage_key) as f:
                assert f.read() == (folder / outcome.source.removeprefix("data/")).read_bytes()
    assert Series.objects.filter(study__project=project).count() == 15

    again = studies_import(project=project, paths=[folder / "emri_small.dcm"])
    assert [s.status for s in again.series] == [ALREADY_IMPORTED]
    assert Series.objects.filter(study__project=project).count() == 15
