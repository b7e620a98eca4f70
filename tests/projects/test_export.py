"""Export of a round in four formats: round trips, accepted cases only, byte-identical repeats."""

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from django.core.management import CommandError, call_command
from pydicom.uid import UID_dictionary

from annotator.annotation.services import Author, effort_record, mask_version_save
from annotator.core.errors import InvalidInput
from annotator.imaging.volumes import volume_array
from annotator.models import Lesion, Series
from inference.models import ModelVersion
from projects.exports import FORMATS, case_split, export_round_files, parse_formats
from projects.intake.image_import import ImportedVolume
from projects.intake.ingest import studies_import
from projects.models import Project, Round, Task
from projects.services import current_round
from projects.task_services import task_claim_next, task_review, task_submit
from tests.annotator.test_dicom_reading import FLIPPED, write_ct_series
from tests.test_api_schema import schema_errors

pytestmark = pytest.mark.django_db

WINDOW: dict[str, Any] = {"name": "soft", "center": 0, "width": 1000}


@dataclass
class World:
    project: Project
    round: Round
    dicom_task: Task
    dicom_masks: list[np.ndarray]  # the accepted masks of the DICOM case, lesion by lesion
    nifti_task: Task
    nifti_masks: list[np.ndarray]
    open_task: Task
    team: dict[str, Any]


def _annotate(
    world_team: dict[str, Any], project: Project, masks: list[tuple[str, np.ndarray, str]]
) -> Task:
    """Claim the next task, save one lesion per (class, mask, source), submit and accept it."""
    annotator = world_team["annotator"]
    task = task_claim_next(user=annotator, project=project)
    assert task is not None
    for lesion_class, mask, source in masks:
        lesion = Lesion.objects.create(task=task, lesion_class=lesion_class, created_by=annotator)
        author = Author(backend="classical") if source == "model" else Author(user=annotator)
        mask_version_save(lesion=lesion, mask=mask, source=source, author=author, parent=None)
    t0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    first = task.lesions.order_by("id").first()
    assert first is not None
    effort_record(
        task=task,
        user=annotator,
        intervals=[{"started_at": t0, "ended_at": t0 + timedelta(seconds=30), "lesion": first.pk}],
        interactions=[{"tool": "box", "at": t0 + timedelta(seconds=1), "lesion": first.pk}],
    )
    task_submit(task=task, user=annotator)
    task_review(task=task, reviewer=world_team["reviewer"], decision="accept")
    return task


@pytest.fixture
def world(
    make_project: Callable[..., Project],
    team: dict[str, Any],
    import_volume: Callable[[Project], ImportedVolume],
    tmp_path: Path,
) -> World:
    project = make_project(
        "exp", manager=team["manager"], annotator=team["annotator"], reviewer=team["reviewer"]
    )
    project.window_presets = [WINDOW]
    project.save()
    round_ = current_round(project)
    assert round_ is not None
    round_.model_version = ModelVersion.objects.create(
        project=project, name="exp-v1", backend="classical"
    )
    round_.save()
    write_ct_series(tmp_path / "in" / "a", count=5, size=16, orientation=FLIPPED, seed=1)
    assert studies_import(project=project, paths=[tmp_path / "in" / "a"]).imported_series == 1
    nifti = import_volume(project)
    write_ct_series(tmp_path / "in" / "b", count=3, size=16, seed=9)
    assert studies_import(project=project, paths=[tmp_path / "in" / "b"]).imported_series == 1

    shape = (5, 16, 16)
    tumour = np.zeros(shape, dtype=bool)
    tumour[1:4, 2:7, 3:12] = True  # not symmetric in any axis: a flip would show
    tumour[1, 2, 3] = False
    node = np.zeros(shape, dtype=bool)
    node[3:5, 5:9, 10:14] = True  # overlaps the tumour on slice 3
    dicom_task = _annotate(team, project, [("tumour", tumour, "human"), ("node", node, "model")])
    assert not dicom_task.series.generated

    phantom_mask = np.zeros(nifti.volume.shape_zyx, dtype=bool)
    phantom_mask[10:14, 40:60, 30:50] = True
    nifti_task = _annotate(team, project, [("tumour", phantom_mask, "human")])
    assert nifti_task.series.generated

    open_task = task_claim_next(user=team["annotator"], project=project)
    assert open_task is not None and open_task.state == Task.State.ASSIGNED
    return World(
        project,
        round_,
        dicom_task,
        [tumour, node],
        nifti_task,
        [phantom_mask],
        open_task,
        team,
    )


def _case(manifest: dict[str, Any], task: Task) -> dict[str, Any]:
    return next(c for c in manifest["cases"] if c["task"] == task.pk)


def _instance_labels(masks: list[np.ndarray]) -> np.ndarray:
    labels = np.zeros(masks[0].shape, dtype=np.uint8)
    for label, mask in enumerate(masks, start=1):
        labels[mask] = label
    return labels


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_round_trip_in_every_format(world: World, tmp_path: Path) -> None:
    out = tmp_path / "export"
    manifest = export_round_files(world.round, out)

    # accepted cases only
    assert {c["task"] for c in manifest["cases"]} == {world.dicom_task.pk, world.nifti_task.pk}
    assert not (out.with_name("export.partial")).exists()
    assert json.loads((out / "manifest.json").read_text()) == manifest

    for task, masks in (
        (world.dicom_task, world.dicom_masks),
        (world.nifti_task, world.nifti_masks),
    ):
        case = _case(manifest, task)
        name = case["case"]
        expected = _instance_labels(masks)
        volume = task.series.volume

        # NIfTI: the stored image and the instance label map on its grid
        labels_image = sitk.ReadImage(str(out / "labels" / f"{name}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(labels_image), expected)
        np.testing.assert_allclose(labels_image.GetOrigin(), volume.origin)
        np.testing.assert_allclose(labels_image.GetDirection(), volume.direction)
        image = sitk.ReadImage(str(out / "images" / f"{name}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume_array(volume))

        # MedSAM2 npz: the contract the training job reads
        with np.load(out / "medsam2" / f"{name}.npz") as npz:
            assert sorted(npz.files) == ["direction", "gts", "imgs", "origin", "spacing"]
            depth = expected.shape[0]
            # MedSAM2 samples 8 slices from a labelled one: short cases get the last repeated
            padding = max(0, int(np.flatnonzero(expected.any(axis=(1, 2)))[0]) + 8 - depth)
            assert case["medsam2_padding"] == padding and npz["gts"].shape[0] == depth + padding
            np.testing.assert_array_equal(npz["gts"][:depth], expected)
            np.testing.assert_array_equal(npz["gts"][depth:], np.repeat(expected[-1:], padding, 0))
            assert npz["imgs"].dtype == np.uint8 and npz["imgs"].shape == npz["gts"].shape
            for key in ("spacing", "direction", "origin"):
                assert npz[key].dtype == np.float64
            np.testing.assert_array_equal(npz["spacing"], image.GetSpacing())
            np.testing.assert_allclose(npz["direction"], volume.direction)
            np.testing.assert_allclose(npz["origin"], volume.origin)
            width = float(WINDOW["width"])
            low = float(WINDOW["center"]) - width / 2
            hu = np.clip(volume_array(volume).astype(np.float64), low, low + width)
            windowed = ((hu - low) / width * 255.0).astype(np.uint8)
            np.testing.assert_array_equal(npz["imgs"][:depth], windowed)
            np.testing.assert_array_equal(npz["imgs"][depth:], np.repeat(windowed[-1:], padding, 0))

        # nnU-Net: semantic labels, the project's class index
        dataset = out / "nnunet" / "Dataset500_ExpR00"
        semantic = np.zeros(expected.shape, dtype=np.uint8)
        for mask, lesion in zip(masks, case["lesions"], strict=True):
            semantic[mask] = {"tumour": 1, "node": 2}[lesion["class"]]
        nn_labels = sitk.ReadImage(str(dataset / "labelsTr" / f"{name}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(nn_labels), semantic)
        assert (dataset / "imagesTr" / f"{name}_0000.nii.gz").read_bytes() == (
            out / "images" / f"{name}.nii.gz"
        ).read_bytes()

        # provenance
        assert case["annotator"] == "annotator" and case["reviewer"] == "reviewer"
        assert case["split"] == case_split(task) in ("train", "validation")
        assert case["times"]["accepted"] == case["accepted_at"] is not None
        assert case["lesions"][0]["effort"]["active_s"] == 30.0
        assert case["lesions"][0]["effort"]["interactions"]["box"] == 1

    assert manifest["model_version"] == {
        "id": world.round.model_version_id,
        "name": "exp-v1",
        "backend": "classical",
    }
    dataset_json = json.loads((out / "nnunet" / "Dataset500_ExpR00" / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "tumour": 1, "node": 2}
    assert dataset_json["numTraining"] == 2 and dataset_json["file_ending"] == ".nii.gz"
    assert dataset_json["channel_names"] == {"0": "CT"}
    assert _case(manifest, world.dicom_task)["overlap_voxels"] == int(
        (world.dicom_masks[0] & world.dicom_masks[1]).sum()
    )

    # DICOM SEG: each lesion whole, frame by frame on the source instances
    case = _case(manifest, world.dicom_task)
    seg = hd.seg.segread(out / "dicom-seg" / f"{case['case']}.dcm")
    series: Series = world.dicom_task.series
    uids = list(
        series.instances.order_by("frame_offset").values_list("sop_instance_uid", flat=True)
    )
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=[1, 2],
        assert_missing_frames_are_empty=True,
    )
    for k, mask in enumerate(world.dicom_masks):
        np.testing.assert_array_equal(pixels[..., k].astype(bool), mask)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_instance_uid
    assert seg.SegmentSequence[1].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"

    # the NIfTI upload's SEG references the DICOM generated for it at import
    nifti_case = _case(manifest, world.nifti_task)
    assert nifti_case["files"]["dicom-seg"] == [f"dicom-seg/{nifti_case['case']}.dcm"]
    nifti_seg = hd.seg.segread(out / "dicom-seg" / f"{nifti_case['case']}.dcm")
    generated = list(
        world.nifti_task.series.instances.order_by("frame_offset").values_list(
            "sop_instance_uid", flat=True
        )
    )
    pixels = nifti_seg.get_pixels_by_source_instance(
        source_sop_instance_uids=generated, segment_numbers=[1]
    )
    np.testing.assert_array_equal(pixels[..., 0].astype(bool), world.nifti_masks[0])
    assert manifest["skipped"] == []
    written = {path for paths in manifest["files"].values() for path in paths}
    assert written | {"manifest.json"} == set(_files(out))


def test_the_same_input_gives_the_same_bytes(world: World, tmp_path: Path) -> None:
    export_round_files(world.round, tmp_path / "one")
    export_round_files(world.round, tmp_path / "two")
    first, second = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert first.keys() == second.keys() and len(first) > 10
    assert [k for k in first if first[k] != second[k]] == []


# SHA-256 of every file of the `world` round's export, pinned from the exporter as it was before
# its formats became a registry (projects/export_formats/), so a refactor cannot change a byte.
# Case names hold task primary keys, so files are named by case role (DICOM, NIFTI). Three things
# in the world differ from one run to the next, and are normalised before hashing, not skipped:
# - DICOM SEG: UIDs of the source (random at import, and derived from primary keys), dates
#   (from the acceptance, i.e. now) and each segment's Tracking ID (the lesion's primary key):
#   every non-registered UI value, every DA/TM/DT and the Tracking IDs' numbers are set to a
#   constant and the rest of the file, pixel data included, is hashed as pydicom writes it;
# - manifest.json: the same UIDs and times, primary keys (SQLite restarts them, PostgreSQL does
#   not) and the train/validation split (a hash of the random study UID): replaced in the JSON
#   text, so key order, indentation and every other value stay pinned.
PINNED_EXPORT = {
    "dicom-seg/DICOM.dcm": "49559be74252db84d19b65930c44659e03d78680cc8f915ac9f3e49e64072558",
    "dicom-seg/NIFTI.dcm": "05d29bc535f5642187cb37b2f67fe329518d95f94f2f33e1930caa611918791d",
    "images/DICOM.nii.gz": "e2e9683eba173889843c79ca386d2b2c403bac81a40a9b4ceb24600934361523",
    "images/NIFTI.nii.gz": "180be2bd246b995ae7f89df16cceffabd842bc1513a83736db48eb487b3ccbfa",
    "labels/DICOM.nii.gz": "ae217597356168343e1d479e5f33e47deca3ee83d49c2e5c778ac4faac36b2dc",
    "labels/NIFTI.nii.gz": "a75c576a6a9e44852c05cf41f0e2c6fe8ecb7848331e4ee346a6998f3c708dbe",
    "manifest.json": "b987187938fca13f22fc2176033274fc4d1e41cca35a7756ed8587ba2458dbf0",
    "medsam2/DICOM.npz": "c04752fc9bf8c21eab41aa49fdc47f24fa8456f61625022663ce2fee62772828",
    "medsam2/NIFTI.npz": "b469f61dc005b0c19d9997f97dfd69f8a522887e872879caa748bef59e1fd097",
    "nnunet/Dataset500_ExpR00/dataset.json": (
        "9e20ab6ba5127f735ec3e2fc204e66ad327e08c19709c7fb5f1e16474e450a65"
    ),
    "nnunet/Dataset500_ExpR00/imagesTr/DICOM_0000.nii.gz": (
        "e2e9683eba173889843c79ca386d2b2c403bac81a40a9b4ceb24600934361523"
    ),
    "nnunet/Dataset500_ExpR00/imagesTr/NIFTI_0000.nii.gz": (
        "180be2bd246b995ae7f89df16cceffabd842bc1513a83736db48eb487b3ccbfa"
    ),
    "nnunet/Dataset500_ExpR00/labelsTr/DICOM.nii.gz": (
        "ae217597356168343e1d479e5f33e47deca3ee83d49c2e5c778ac4faac36b2dc"
    ),
    "nnunet/Dataset500_ExpR00/labelsTr/NIFTI.nii.gz": (
        "a75c576a6a9e44852c05cf41f0e2c6fe8ecb7848331e4ee346a6998f3c708dbe"
    ),
}
_CONSTANT = {"DA": "19000101", "TM": "000000", "DT": "19000101000000"}
_MANIFEST_VOLATILE = [
    (r'"\d{4}-\d\d-\d\dT[0-9:.+]+"', '"TIME"'),
    (r'"[0-9]+(\.[0-9]+){4,}"', '"UID"'),
    (r'"(task|volume|lesion|id|final_mask_version|model_mask_version)": \d+', r'"\1": 0'),
    (r'"split": "(train|validation)"', '"split": "SPLIT"'),
    (r'"train": \d+,\n(\s*)"validation": \d+', r'"train": 0,\n\1"validation": 0'),
]


def _dicom_digest(data: bytes) -> str:
    dataset = pydicom.dcmread(io.BytesIO(data))
    for part in (dataset.file_meta, dataset):
        for element in part.iterall():
            if element.VR == "UI" and element.value not in UID_dictionary:
                element.value = "9.9"
            elif element.VR in _CONSTANT:
                element.value = _CONSTANT[element.VR]
            elif element.keyword == "TrackingID":  # "lesion <primary key>"
                element.value = re.sub(r"\d+", "0", str(element.value))
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _manifest_digest(data: bytes, names: dict[str, str]) -> str:
    text = data.decode()
    for case, role in names.items():
        text = text.replace(case, role)
    for pattern, replacement in _MANIFEST_VOLATILE:
        text = re.sub(pattern, replacement, text)
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_export_is_pinned_byte_for_byte(world: World, tmp_path: Path) -> None:
    manifest = export_round_files(world.round, tmp_path / "pinned")
    names = {
        _case(manifest, world.dicom_task)["case"]: "DICOM",
        _case(manifest, world.nifti_task)["case"]: "NIFTI",
    }
    digests = {}
    for path, data in _files(tmp_path / "pinned").items():
        for case, role in names.items():
            path = path.replace(case, role)
        if path.endswith(".dcm"):
            digests[path] = _dicom_digest(data)
        elif path == "manifest.json":
            digests[path] = _manifest_digest(data, names)
        else:
            digests[path] = hashlib.sha256(data).hexdigest()
    assert digests == PINNED_EXPORT


def test_chosen_formats_only(world: World, tmp_path: Path) -> None:
    manifest = export_round_files(world.round, tmp_path / "x", formats=("medsam2-npz",))
    assert manifest["formats"] == ["medsam2-npz"]
    assert {p.name for p in (tmp_path / "x").iterdir()} == {"medsam2", "manifest.json"}
    assert manifest["skipped"] == []


def test_an_unknown_format_is_refused_before_anything_is_written(
    world: World, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="bogus"):
        export_round_files(world.round, tmp_path / "x", formats=("nifti", "bogus"))
    with pytest.raises(CommandError, match="bogus"):
        call_command("export_round", "exp", "0", "--out", str(tmp_path / "x"), "--format", "bogus")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    assert parse_formats("dicom-seg, nifti") == ("nifti", "dicom-seg")


def test_the_management_command(world: World, tmp_path: Path) -> None:
    out = io.StringIO()
    call_command(
        "export_round", "exp", "0", "--out", str(tmp_path / "x"), "--format", "nifti", stdout=out
    )
    assert "exported 2 accepted case(s) as nifti" in out.getvalue()
    assert {p.name for p in (tmp_path / "x").iterdir()} == {"images", "labels", "manifest.json"}
    call_command("export_round", "exp", "0", "--out", str(tmp_path / "all"), stdout=io.StringIO())
    assert {p.name for p in (tmp_path / "all").iterdir()} == {
        "images",
        "labels",
        "medsam2",
        "nnunet",
        "dicom-seg",
        "manifest.json",
    }
    assert json.loads((tmp_path / "all" / "manifest.json").read_text())["formats"] == list(FORMATS)


def test_the_api_download(world: World, client_for: Callable[[Any], Any]) -> None:
    url = f"/api/projects/exp/rounds/{world.round.number}/export/files/"
    manager = client_for(world.team["manager"])
    response = manager.get(url, {"formats": "nifti,dicom-seg"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    body = b"".join(response.streaming_content)
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    dicom_case = f"r00_t{world.dicom_task.pk:06d}"
    assert {"manifest.json", f"dicom-seg/{dicom_case}.dcm", f"labels/{dicom_case}.nii.gz"} <= names
    assert not any(n.startswith(("medsam2/", "nnunet/")) for n in names)
    again = b"".join(manager.get(url, {"formats": "nifti,dicom-seg"}).streaming_content)
    assert again == body

    assert manager.get(url, {"formats": "nifti,bogus"}).status_code == 400
    assert client_for(world.team["annotator"]).get(url).status_code == 403
    manifest_url = f"/api/projects/exp/rounds/{world.round.number}/export/"
    manifest = manager.get(manifest_url).json()
    assert {c["task"] for c in manifest["cases"]} == {world.dicom_task.pk, world.nifti_task.pk}
    # with effort, a model's mask and two lesions: the schema describes all of it
    assert manifest["cases"][0]["lesions"][1]["effort"] is not None
    assert schema_errors("GET", manifest_url, 200, manifest) == []
