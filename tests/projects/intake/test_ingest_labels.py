"""Labels arriving with their series (RTSTRUCT, DICOM SEG) become lesions through the ingest,
with and without de-identification. Uses ../shared/data; skipped where it is absent."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from django.core.files.storage import default_storage

from annotator.annotation.services import mask_version_load
from annotator.models import Instance, Lesion, Pseudonym, Series
from inference.engine import dice
from inference.evaluation import DEFAULT_DATA as DATA
from projects.intake.ingest import IMPORTED, studies_import
from projects.models import Project

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not (DATA / "pairs.json").exists(), reason=f"no real data at {DATA}"),
]
DCMQI = DATA / "dcmqi_ct3slice"


def test_lung1_ct_with_its_rtstruct(make_project: Callable[..., Project]) -> None:
    project = make_project("lung1")
    report = studies_import(project=project, paths=[DATA / "mirp/ct_images_seg_nsclc/LUNG1-001"])
    assert report.counts()["series imported"] == 1
    (rt,) = [f for f in report.files if "RTSTRUCT" in f.reason or "lesion" in f.reason]
    assert rt.status == IMPORTED and "4 lesion(s) created" in rt.reason, rt.reason
    names = json.loads((DATA / "mirp/nifti/LUNG1-001_rtstruct_labels.json").read_text())
    labels = sitk.GetArrayFromImage(
        sitk.ReadImage(str(DATA / "mirp/nifti/LUNG1-001_rtstruct_labels.nii.gz"))
    )
    lesions = {lesion.pk: lesion for lesion in Lesion.objects.filter(task__round__project=project)}
    assert len(lesions) == 4
    # Each lesion keeps its ROI's name; no ROI is named as a class of the project ("tumour",
    # "node"), so each got the first class, and the report says so.
    assert sorted(lesion.name for lesion in lesions.values()) == sorted(names.values())
    assert {lesion.lesion_class for lesion in lesions.values()} == {"tumour"}
    (summary,) = report.labels
    assert sorted(summary.unmatched) == sorted(names.values())
    number_of = {name: int(number) for number, name in names.items()}
    by_number = {}
    for lesion in lesions.values():
        version = lesion.mask_versions.get()
        assert version.source == "import"
        by_number[number_of[lesion.name]] = mask_version_load(version)
    painted = np.zeros_like(labels)
    for number in sorted(by_number):  # the label map paints later labels over earlier ones
        painted[by_number[number]] = number
    for number in by_number:
        score = dice(painted == number, labels == number)
        print(f"LUNG1-001 {names[str(number)]}: Dice {score:.4f}")
        assert score >= 0.99


def test_dcmqi_ct_with_its_seg(make_project: Callable[..., Project]) -> None:
    project = make_project("dcmqi")
    report = studies_import(project=project, paths=[DCMQI / "ct-3slice", DCMQI / "liver.dcm"])
    (seg,) = [f for f in report.files if f.source.endswith("liver.dcm")]
    assert seg.status == IMPORTED, seg.reason
    (lesion,) = Lesion.objects.filter(task__round__project=project)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(DCMQI / "liver_seg.nrrd"))) > 0
    assert dice(mask_version_load(lesion.mask_versions.get()), reference) >= 0.99


def test_deidentified_import_keeps_labels_on_their_images(
    make_project: Callable[..., Project],
) -> None:
    project = make_project("anon")
    project.deidentify = True
    project.save()
    originals = {
        str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p)
        for p in sorted((DCMQI / "ct-3slice").iterdir())
    }
    first = next(iter(originals.values()))
    report = studies_import(project=project, paths=[DCMQI / "ct-3slice", DCMQI / "liver.dcm"])
    assert report.counts()["series imported"] == 1
    (seg,) = [f for f in report.files if f.source.endswith("liver.dcm")]
    assert seg.status == IMPORTED, seg.reason
    (lesion,) = Lesion.objects.filter(task__round__project=project)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(DCMQI / "liver_seg.nrrd"))) > 0
    assert dice(mask_version_load(lesion.mask_versions.get()), reference) >= 0.99

    series = Series.objects.get(study__project=project)
    assert series.series_instance_uid != first.SeriesInstanceUID
    assert series.study.patient_id == Pseudonym.objects.get(kind="patient").replacement
    for instance in Instance.objects.filter(series=series):
        assert instance.sop_instance_uid not in originals
        with default_storage.open(instance.storage_key) as f:
            stored = pydicom.dcmread(f)
        assert stored.PatientIdentityRemoved == "YES"
        assert stored.PatientID == series.study.patient_id
        assert stored.SOPInstanceUID == instance.sop_instance_uid
        assert stored.StudyDate != first.StudyDate
        assert not any(e.tag.is_private for e in stored)
    # the same files again: the pseudonymised series is recognised, not duplicated
    again = studies_import(project=project, paths=[DCMQI / "ct-3slice"])
    assert [s.status for s in again.series] == ["already imported"]


@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_sts_series_with_its_rtstruct(make_project: Callable[..., Project], modality: str) -> None:
    pairs = {p["id"]: p for p in json.loads((DATA / "pairs.json").read_text())["dicom"]}
    pair = pairs[f"sts_STS_001_{modality}"]
    project = make_project(f"sts-{modality.lower().replace('_', '-')}")
    report = studies_import(
        project=project, paths=[DATA / pair["image_dir"], DATA / pair["seg_file"]]
    )
    (rt,) = [f for f in report.files if f.source.endswith(Path(pair["seg_file"]).name)]
    assert rt.status == IMPORTED, rt.reason
    (lesion,) = Lesion.objects.filter(task__round__project=project)
    mask = mask_version_load(lesion.mask_versions.get())
    nifti = DATA / f"mirp/sts_images/STS_001/{modality}/nifti/mask/mask.nii.gz"
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(nifti))) > 0
    score = dice(mask, reference)
    print(f"STS_001 {modality} via ingest: Dice {score:.4f}")
    assert score >= 0.99


STS = DATA / "mirp/sts_images/STS_001"
STS_MODALITIES = ("CT", "MR_T1", "PET")


def _sts_lesions(project: Project) -> dict[tuple[str, str], np.ndarray]:
    """(modality, name) -> mask of every lesion of the project."""
    return {
        (lesion.task.series.modality, lesion.name): mask_version_load(lesion.mask_versions.get())
        for lesion in Lesion.objects.filter(task__round__project=project)
    }


def test_sts_ct_mr_and_pet_rtstructs_land_alike_in_one_upload_or_one_at_a_time(
    make_project: Callable[..., Project],
) -> None:
    """STS_001's CT, MR and PET share one frame of reference, and its RTSTRUCTs' series and
    image UIDs match none of the images: each lands on its own series by the SOP class of the
    images it names, whatever the order of the uploads."""
    images = [STS / m / "dicom/image" for m in STS_MODALITIES]
    structures = [STS / m / "dicom/mask/RS.dcm" for m in STS_MODALITIES]
    together = make_project("sts-together")
    report = studies_import(project=together, paths=[*images, *structures])
    assert report.counts()["series imported"] == 3
    assert [s.status for s in report.labels] == [IMPORTED] * 3, [s.reason for s in report.labels]
    lesions = _sts_lesions(together)
    assert sorted(lesions) == [
        ("CT", "GTV_Mass_CT"),
        ("MR", "GTV_Mass_MR_T1"),
        ("PT", "GTV_Mass_PET"),
    ]
    for modality in STS_MODALITIES:
        nifti = STS / modality / "nifti/mask/mask.nii.gz"
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(nifti))) > 0
        ((_, mask),) = [(k, v) for k, v in lesions.items() if k[1] == f"GTV_Mass_{modality}"]
        assert dice(mask, reference) >= 0.99

    apart = make_project("sts-apart")
    for modality_images, structure in zip(images, structures, strict=True):
        one = studies_import(project=apart, paths=[modality_images, structure])
        (summary,) = one.labels
        assert summary.status == IMPORTED, summary.reason
    separately = _sts_lesions(apart)
    assert sorted(separately) == sorted(lesions)
    for key, mask in lesions.items():
        np.testing.assert_array_equal(separately[key], mask)

    # everything again: nothing new, each object's lesion reported unchanged
    again = studies_import(project=together, paths=[*images, *structures])
    assert [s.status for s in again.labels] == ["already imported"] * 3
    assert [len(s.unchanged) for s in again.labels] == [1, 1, 1]
    assert Lesion.objects.filter(task__round__project=together).count() == 3
