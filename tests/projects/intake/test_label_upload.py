"""Label objects (RTSTRUCT, DICOM SEG) uploaded through the import endpoint, on series the tests
write: all or nothing, idempotent, names kept and mapped to the project's classes, and the
series each was drawn on found by its references before its frame of reference."""

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from rest_framework.test import APIClient

from annotator.annotation.services import mask_version_load
from annotator.models import Lesion, MaskVersion
from projects.models import Project
from tests.annotator.test_dicom_reading import Slice, write_ct_series
from tests.annotator.test_hostile_images import named
from tests.annotator.test_hostile_labels import (
    mask_files,
    raw_value,
    rtstruct_file,
    seg_file,
    square,
)

pytestmark = pytest.mark.django_db
URL = "/api/projects/labels/imports/"


@pytest.fixture
def client(
    team: dict[str, Any],
    make_project: Callable[..., Project],
    client_for: Callable[[Any], APIClient],
) -> APIClient:
    """The manager of project "labels" (classes "tumour" and "node")."""
    make_project("labels", manager=team["manager"])
    return client_for(team["manager"])


def upload(client: APIClient, *paths: Path) -> Any:
    files = [named(p.name, p.read_bytes()) for p in paths]
    return client.post(URL, {"files": files}, format="multipart")


def label_report(response: Any, name: str) -> dict[str, Any]:
    (report,) = [r for r in response.json()["labels"] if r["source"] == name]
    return report


def names_and_classes(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((e["name"], e["class"]) for e in entries)


def test_an_rtstruct_upload_is_201_with_its_report_then_200_creating_nothing(
    client: APIClient, tmp_path: Path, media_root: Path
) -> None:
    slices = write_ct_series(tmp_path / "ct", count=4, size=16)
    assert upload(client, *(s.path for s in slices)).status_code == 201
    rois = {
        "Tumour": [square(slices[1], 1, 1, 4, 4)],
        "NODE": [square(slices[2], 2, 2, 5, 5)],
        "Spinal_Cord": [square(slices[2], 0, 0, 2, 2)],
    }
    rtstruct_file(tmp_path / "rs.dcm", slices, rois)

    first = upload(client, tmp_path / "rs.dcm")
    assert first.status_code == 201, first.content
    report = label_report(first, "rs.dcm")
    assert report["status"] == "imported"
    # names kept; matched case-insensitively; a name no class has gets the first, and is listed
    assert names_and_classes(report["created"]) == [
        ("NODE", "node"),
        ("Spinal_Cord", "tumour"),
        ("Tumour", "tumour"),
    ]
    assert report["unmatched"] == ["Spinal_Cord"]
    assert "no class of the project is named 'Spinal_Cord'" in report["reason"]
    assert report["unchanged"] == []
    assert first.json()["counts"]["lesions created"] == 3
    lesions = {lesion.name: lesion for lesion in Lesion.objects.all()}
    assert sorted(lesions) == ["NODE", "Spinal_Cord", "Tumour"]
    assert {e["id"] for e in report["created"]} == {lesion.pk for lesion in lesions.values()}
    assert int(mask_version_load(lesions["Tumour"].mask_versions.get())[1].sum()) > 0
    files = sorted(mask_files(media_root))

    again = upload(client, tmp_path / "rs.dcm")
    assert again.status_code == 200, again.content
    report = label_report(again, "rs.dcm")
    assert report["status"] == "already imported" and report["created"] == []
    assert names_and_classes(report["unchanged"]) == [
        ("NODE", "node"),
        ("Spinal_Cord", "tumour"),
        ("Tumour", "tumour"),
    ]
    assert report["reason"].startswith("nothing new: 3 lesion(s) already imported, unchanged")
    assert again.json()["counts"]["lesions created"] == 0
    assert Lesion.objects.count() == 3 and MaskVersion.objects.count() == 3
    assert sorted(mask_files(media_root)) == files


def test_a_seg_with_its_images_twice_keeps_labels_and_descriptions(
    client: APIClient, tmp_path: Path
) -> None:
    slices = write_ct_series(tmp_path / "ct", count=4, size=16)
    frame = np.zeros((16, 16), bool)
    frame[4:9, 3:7] = True
    path = tmp_path / "seg.dcm"
    seg_file(path, slices, [(1, 1, frame), (2, 2, frame)], {1: "Node", 2: "kidney"})
    ds = pydicom.dcmread(path)
    del ds.SegmentSequence[1].SegmentLabel  # then SegmentDescription names it
    ds.SegmentSequence[1].SegmentDescription = "Left kidney"
    ds.save_as(path, enforce_file_format=True)
    everything = [*(s.path for s in slices), path]

    first = upload(client, *everything)
    assert first.status_code == 201, first.content
    report = label_report(first, "seg.dcm")
    assert names_and_classes(report["created"]) == [("Left kidney", "tumour"), ("Node", "node")]
    assert report["unmatched"] == ["Left kidney"]
    assert report["matched_by"] == "its referenced Series Instance UID"

    again = upload(client, *everything)
    assert again.status_code == 200, again.content
    assert [s["status"] for s in again.json()["series"]] == ["already imported"]
    report = label_report(again, "seg.dcm")
    assert report["created"] == [] and len(report["unchanged"]) == 2
    assert Lesion.objects.count() == 2


def _failing_rtstruct(path: Path, slices: Sequence[Slice]) -> None:
    """An RTSTRUCT whose second ROI holds a contour that is not numbers."""
    good, bad = square(slices[1], 1, 1, 4, 4), square(slices[2], 1, 1, 4, 4)
    ds = rtstruct_file(path, slices, {"GTV": [good], "node": [bad]})
    contour = ds.ROIContourSequence[1].ContourSequence[0]
    data = contour.get_item("ContourData").value
    raw_value(contour, "ContourData", "DS", b"nan" + data[data.index(b"\\") :])
    ds.save_as(path, enforce_file_format=True)


def test_a_refused_label_object_is_a_400_that_leaves_no_lesion_of_the_upload(
    client: APIClient, tmp_path: Path, media_root: Path
) -> None:
    slices = write_ct_series(tmp_path / "ct", count=4, size=16)
    assert upload(client, *(s.path for s in slices)).status_code == 201
    rtstruct_file(tmp_path / "good.dcm", slices, {"tumour": [square(slices[1], 1, 1, 4, 4)]})
    _failing_rtstruct(tmp_path / "bad.dcm", slices)

    response = upload(client, tmp_path / "good.dcm", tmp_path / "bad.dcm")
    assert response.status_code == 400, response.content
    bad, good = label_report(response, "bad.dcm"), label_report(response, "good.dcm")
    assert bad["status"] == "rejected"
    assert "ROI 2 'node' contour 0: ContourData holds values that are not finite" in bad["reason"]
    assert good["status"] == "not imported" and good["created"] == []
    assert "all together or not at all, and bad.dcm was refused" in good["reason"]
    outcomes = {f["source"]: f for f in response.json()["files"]}
    assert outcomes["bad.dcm"]["status"] == "rejected"
    assert outcomes["good.dcm"]["status"] == "not imported"
    assert not Lesion.objects.exists() and not MaskVersion.objects.exists()
    assert not mask_files(media_root)

    # nothing of it was kept, not even its identity: alone, the good one imports
    alone = upload(client, tmp_path / "good.dcm")
    assert alone.status_code == 201, alone.content
    assert names_and_classes(label_report(alone, "good.dcm")["created"]) == [("tumour", "tumour")]
    assert Lesion.objects.count() == 1


# ---------------------------------------------------------------------------------------------
# Series sharing a frame of reference, labels whose UIDs are stale


def _as_mr(slices: Sequence[Slice], frame_of_reference: str) -> None:
    """Make a written CT series an MR series of ``frame_of_reference``."""
    for s in slices:
        ds = pydicom.dcmread(s.path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.Modality = "MR"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.save_as(s.path, enforce_file_format=True)


def _stale(path: Path, sop_class: str | None) -> None:
    """Replace the RTSTRUCT's series and image references by UIDs no project holds (as an
    export that re-identified the images and not the structure set); keep their SOP class."""
    ds = pydicom.dcmread(path)
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    series = series.RTReferencedSeriesSequence[0]
    series.SeriesInstanceUID = generate_uid()
    for image in series.ContourImageSequence:
        image.ReferencedSOPInstanceUID = generate_uid()
        if sop_class is not None:
            image.ReferencedSOPClassUID = sop_class
    ds.save_as(path, enforce_file_format=True)


def _ct_and_mr(tmp_path: Path, *, sop_classes: bool = True) -> dict[str, tuple[list[Path], Path]]:
    """A CT and an MR series in one frame of reference, each with an RTSTRUCT of stale UIDs
    (their image references' SOP classes kept, or none): modality -> (images, RTSTRUCT)."""
    ct = write_ct_series(tmp_path / "ct", count=4, size=16, seed=1)
    mr = write_ct_series(tmp_path / "mr", count=4, size=16, seed=2)
    frame = str(pydicom.dcmread(ct[0].path).FrameOfReferenceUID)
    _as_mr(mr, frame)
    out = {}
    for modality, slices, sop_class, box in (
        ("CT", ct, CTImageStorage, (1, 1, 4, 4)),
        ("MR", mr, MRImageStorage, (2, 2, 6, 6)),
    ):
        path = tmp_path / f"rs_{modality}.dcm"
        rtstruct_file(path, slices, {f"GTV_{modality}": [square(slices[1], *box)]})
        _stale(path, sop_class if sop_classes else None)
        out[modality] = ([s.path for s in slices], path)
    return out


def _lesions(project: str) -> list[tuple[str, str, int]]:
    return sorted(
        (
            lesion.task.series.modality,
            lesion.name,
            int(mask_version_load(lesion.mask_versions.get()).sum()),
        )
        for lesion in Lesion.objects.filter(task__round__project__slug=project)
    )


def test_labels_of_series_sharing_a_frame_of_reference_land_alike_in_any_order(
    team: dict[str, Any],
    make_project: Callable[..., Project],
    client_for: Callable[[Any], APIClient],
    tmp_path: Path,
) -> None:
    data = _ct_and_mr(tmp_path)
    client = client_for(team["manager"])
    ct_images, ct_rs = data["CT"]
    mr_images, mr_rs = data["MR"]

    make_project("together", manager=team["manager"])
    response = client.post(
        "/api/projects/together/imports/",
        {"files": [named(p.name, p.read_bytes()) for p in [*ct_images, *mr_images, ct_rs, mr_rs]]},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    for report in response.json()["labels"]:
        assert report["status"] == "imported", report
        assert "kind of images it was drawn on" in report["matched_by"]
    together = _lesions("together")
    assert [(modality, name) for modality, name, _ in together] == [
        ("CT", "GTV_CT"),
        ("MR", "GTV_MR"),
    ]

    for order, slug in ((("CT", "MR"), "ct-first"), (("MR", "CT"), "mr-first")):
        make_project(slug, manager=team["manager"])
        for modality in order:
            images, rs = data[modality]
            response = client.post(
                f"/api/projects/{slug}/imports/",
                {"files": [named(p.name, p.read_bytes()) for p in [*images, rs]]},
                format="multipart",
            )
            assert response.status_code == 201, response.content
        assert _lesions(slug) == together


def test_a_label_that_fits_several_series_is_refused_naming_them(
    client: APIClient, tmp_path: Path
) -> None:
    data = _ct_and_mr(tmp_path, sop_classes=False)  # nothing tells the two series apart
    ct_images, ct_rs = data["CT"]
    response = upload(client, *ct_images, *data["MR"][0], ct_rs)
    assert response.status_code == 201, response.content  # the two series
    report = label_report(response, ct_rs.name)
    assert report["status"] == "rejected"
    assert "several series fit its frame of reference" in report["reason"], report
    assert "(CT " in report["reason"] and "(MR " in report["reason"]
    assert not Lesion.objects.exists()

    # the same object alone, now that both series are there: the same answer, a 400
    again = upload(client, ct_rs)
    assert again.status_code == 400, again.content
    assert label_report(again, ct_rs.name)["reason"] == report["reason"]
    assert not Lesion.objects.exists()


def test_a_label_map_upload_reports_its_labels_by_name_and_identity(
    client: APIClient, tmp_path: Path
) -> None:
    image = sitk.GetImageFromArray(np.zeros((6, 20, 20), np.int16))
    values = np.zeros((6, 20, 20), np.uint8)
    values[1:3, 2:6, 2:6], values[3:5, 10:14, 10:14] = 1, 7
    for name, written in (
        ("scan.nii.gz", image),
        ("labels.nii.gz", sitk.GetImageFromArray(values)),
    ):
        sitk.WriteImage(written, str(tmp_path / name))
    content = (tmp_path / "labels.nii.gz").read_bytes()
    response = client.post(
        "/api/projects/labels/volumes/",
        {
            "file": named("scan.nii.gz", (tmp_path / "scan.nii.gz").read_bytes()),
            "labels": named("labels.nii.gz", content),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    created = body["labels"]["created"]
    assert names_and_classes(created) == [("label 1", "tumour"), ("label 7", "tumour")]
    assert body["labels"]["unmatched"] == ["label 1", "label 7"]
    assert sorted(body["lesions"]) == sorted(e["id"] for e in created)
    digest = hashlib.sha256(content).hexdigest()
    assert sorted(Lesion.objects.values_list("import_key", flat=True)) == [
        f"sha256:{digest}#1",
        f"sha256:{digest}#7",
    ]
