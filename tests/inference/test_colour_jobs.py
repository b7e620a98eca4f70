"""Segmentation jobs on colour series: the engine gets the RGB pixels, (z, y, x, 3), on the
interactive path and on the round's batch pre-annotation; masks, the viewer and DICOMweb keep
working on the grey volume. A backend defined here records what it is given."""

import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from django.test import Client
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

from annotator.annotation.services import mask_version_load
from annotator.imaging.colour import luma
from annotator.imaging.volumes import volume_array
from annotator.models import Lesion, Volume
from inference.batch import round_preannotate
from inference.engine import (
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    ProgressCallback,
    SegmentationResult,
    dice,
    key_slice_and_box,
)
from inference.models import InferenceJob
from projects.intake.ingest import studies_import
from projects.models import Project, Task
from tests.support.colour_images import rgb_disk, write_rgb_dicom_series

pytestmark = pytest.mark.django_db

RECORDER = f"{__name__}.ColourRecorder"
OCTET_LE = (
    f'multipart/related; type="application/octet-stream"; transfer-syntax={ExplicitVRLittleEndian}'
)


class ColourRecorder(ClassicalBackend):
    """The classical backend, keeping every volume it is asked to segment."""

    seen: ClassVar[list[ImageVolume]] = []

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        ColourRecorder.seen.append(volume)
        return super().segment(volume, prompts, progress=progress)


@pytest.fixture
def seen(settings: Any) -> Iterator[list[ImageVolume]]:
    settings.INFERENCE_BACKEND = RECORDER
    ColourRecorder.seen.clear()
    yield ColourRecorder.seen
    ColourRecorder.seen.clear()


@pytest.fixture
def project(make_project: Callable[..., Project], team: dict[str, Any]) -> Project:
    return make_project("colour", manager=team["manager"], annotator=team["annotator"])


def value(dataset: dict[str, Any], tag: str) -> Any:
    return dataset[tag]["Value"][0]


def frames_of(client: Client, uri: str) -> bytes:
    response: Any = client.get(uri, HTTP_ACCEPT=OCTET_LE)
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    boundary = body.split(b"\r\n", 1)[0]
    (part,) = body.split(boundary)[1:-1]
    return part.split(b"\r\n\r\n", 1)[1][:-2]


def test_an_uploaded_colour_picture_is_segmented_in_colour_and_served_grey(
    project: Project,
    team: dict[str, Any],
    client_for: Callable[[Any], Any],
    seen: list[ImageVolume],
    django_capture_on_commit_callbacks: Any,
) -> None:
    rgb, disk = rgb_disk(height=48, width=64, seed=1)
    buffer = io.BytesIO()
    Image.fromarray(rgb[0], "RGB").save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "polyp.png"
    manager = client_for(team["manager"])
    response = manager.post("/api/projects/colour/volumes/", {"file": buffer}, format="multipart")
    assert response.status_code == 201, response.content
    volume = Volume.objects.get(pk=response.json()["volume"])

    # The annotator's interactive path: claim, draw a lesion's box, ask for a segmentation.
    annotator = client_for(team["annotator"])
    task = annotator.post("/api/projects/colour/tasks/next/").json()
    assert task["id"] == response.json()["task"]
    lesion = annotator.post(
        f"/api/tasks/{task['id']}/lesions/", {"lesion_class": "tumour"}, format="json"
    ).json()
    key, box = key_slice_and_box(disk)
    with django_capture_on_commit_callbacks(execute=True):
        response = annotator.post(
            f"/api/lesions/{lesion['id']}/segment/",
            {"key_slice": key, "box": list(box), "z_range": [0, 0]},
            format="json",
        )
    assert response.status_code == 202, response.content
    job = InferenceJob.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    ((received),) = seen
    assert received.is_colour and received.array.shape == (1, 48, 64, 3)
    np.testing.assert_array_equal(received.array, rgb)
    # The mask lives on the grey grid, and the classical backend found the polyp on its luma.
    assert job.result is not None
    mask = mask_version_load(job.result)
    assert mask.shape == volume.shape_zyx == (1, 48, 64)
    assert dice(mask, disk) > 0.9

    # DICOMweb (what the viewer loads) serves the grey volume: one sample a pixel, the luma.
    client = Client()
    client.force_login(team["annotator"])
    series = volume.series
    base = f"/dicomweb/studies/{series.study.study_instance_uid}/series/"
    (instance,) = client.get(f"{base}{series.series_instance_uid}/metadata").json()
    assert value(instance, "00280002") == 1  # SamplesPerPixel
    assert value(instance, "00280004") == "MONOCHROME2"
    rows, columns = value(instance, "00280010"), value(instance, "00280011")
    dtype = {8: "u1", 16: "<u2"}[value(instance, "00280100")]
    if value(instance, "00280103"):
        dtype = dtype.replace("u", "i")
    stored = np.frombuffer(frames_of(client, instance["7FE00010"]["BulkDataURI"]), dtype=dtype)
    slope = float(instance.get("00281053", {"Value": [1]})["Value"][0])
    intercept = float(instance.get("00281052", {"Value": [0]})["Value"][0])
    served = np.rint(stored.reshape(rows, columns) * slope + intercept)
    np.testing.assert_array_equal(served, luma(rgb[0]))
    np.testing.assert_array_equal(volume_array(volume)[0], luma(rgb[0]))


def test_a_colour_dicom_series_is_pre_annotated_in_colour(
    project: Project,
    team: dict[str, Any],
    tmp_path: Path,
    seen: list[ImageVolume],
    django_capture_on_commit_callbacks: Any,
) -> None:
    rgb, disk = rgb_disk(depth=5, height=40, width=48, seed=2)
    write_rgb_dicom_series(tmp_path / "cine", rgb, spacing=(0.5, 0.5, 2.0))
    (summary,) = studies_import(project=project, paths=[tmp_path / "cine"]).series
    assert summary.task_id is not None and summary.volume_id is not None
    task = Task.objects.get(pk=summary.task_id)
    key, box = key_slice_and_box(disk)
    lesion = Lesion.objects.create(task=task, lesion_class="tumour", key_slice=key, box=list(box))
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = round_preannotate(round=task.round, user=team["manager"])
    job.refresh_from_db()
    assert job.queue == "gpu-batch" and job.state == "succeeded", job.error
    ((received),) = seen
    assert received.is_colour and received.shape == (5, 40, 48)
    np.testing.assert_array_equal(received.array, rgb)
    np.testing.assert_allclose(received.spacing, (0.5, 0.5, 2.0))
    assert job.result is not None and job.result.lesion_id == lesion.pk
    mask = mask_version_load(job.result)
    assert mask.shape == (5, 40, 48) and dice(mask, disk) > 0.8
    # Everything else still sees the grey volume: its luma, as DICOM decoding stores it.
    volume = Volume.objects.get(pk=summary.volume_id)
    np.testing.assert_array_equal(volume_array(volume), luma(rgb).astype(np.int16))


def test_a_grey_series_reaches_the_backend_grey(
    lesion: dict[str, Any],
    phantom: Any,
    seen: list[ImageVolume],
    django_capture_on_commit_callbacks: Any,
) -> None:
    key, box = key_slice_and_box(phantom.lesion_masks[0])
    with django_capture_on_commit_callbacks(execute=True):
        response = lesion["client"].post(
            f"/api/lesions/{lesion['id']}/segment/",
            {"key_slice": key, "box": list(box)},
            format="json",
        )
    assert InferenceJob.objects.get(pk=response.json()["id"]).state == "succeeded"
    ((received),) = seen
    assert not received.is_colour
    np.testing.assert_array_equal(received.array, phantom.image)
