"""Segmentation jobs from the API: a box becomes a model mask version, failures show on the job."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from annotator.models import MaskVersion
from annotator.services import mask_version_load
from inference.engine import ImageVolume, LesionPrompt, dice, key_slice_and_box
from inference.models import InferenceJob
from inference.services import segmentation_run

pytestmark = pytest.mark.django_db


def request_segmentation(
    lesion: dict[str, Any], reference: np.ndarray, capture: Callable[..., Any]
) -> Any:
    key_slice, box = key_slice_and_box(reference)
    with capture(execute=True):
        response = lesion["client"].post(
            f"/api/lesions/{lesion['id']}/segment/",
            {"key_slice": key_slice, "box": list(box)},
            format="json",
        )
    assert response.status_code == 202, response.content
    assert response.json()["queue"] == "gpu-interactive"
    return InferenceJob.objects.get(pk=response.json()["id"])


def test_a_box_becomes_a_model_mask_version(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reference = phantom.lesion_masks[0]
    job = request_segmentation(lesion, reference, django_capture_on_commit_callbacks)
    assert job.state == "succeeded", job.error
    version = job.result
    assert version is not None and version.source == "model" and version.author_user is None
    assert version.author_backend.endswith("ClassicalBackend")
    assert dice(mask_version_load(version), reference) > 0.8
    assert job.progress_done == job.progress_total > 0
    assert {"load", "engine", "save", "total"} <= set(job.timings)
    polled = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert polled["state"] == "succeeded" and polled["result"] == version.pk
    # a redelivered message finds the job done and changes nothing
    assert segmentation_run(job_id=job.pk) is None
    assert MaskVersion.objects.filter(lesion_id=lesion["id"]).count() == 1


def test_a_second_prompt_builds_on_the_latest_version(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first = request_segmentation(
        lesion, phantom.lesion_masks[0], django_capture_on_commit_callbacks
    )
    second = request_segmentation(
        lesion, phantom.lesion_masks[0], django_capture_on_commit_callbacks
    )
    assert second.result is not None and second.result.parent_id == first.result_id


def test_a_broken_backend_fails_the_job_with_its_reason(
    lesion: dict[str, Any], phantom: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.INFERENCE_BACKEND = "inference.engine.nowhere.Backend"
    job = request_segmentation(lesion, phantom.lesion_masks[0], django_capture_on_commit_callbacks)
    assert job.state == "failed"
    assert "inference.engine.nowhere" in job.error
    assert job.finished_at is not None and job.result is None
    assert not MaskVersion.objects.filter(lesion_id=lesion["id"]).exists()


def test_an_unexpected_crash_is_recorded_on_the_job(
    lesion: dict[str, Any], phantom: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from inference.engine import ClassicalBackend

    def explode(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("out of memory in the worker")

    monkeypatch.setattr(ClassicalBackend, "segment", explode)
    job = request_segmentation(lesion, phantom.lesion_masks[0], django_capture_on_commit_callbacks)
    assert job.state == "failed"
    assert job.error == "internal error: MemoryError: out of memory in the worker"


def test_prompt_validation(lesion: dict[str, Any]) -> None:
    url = f"/api/lesions/{lesion['id']}/segment/"
    client = lesion["client"]
    response = client.post(url, {"key_slice": 2, "box": [50, 50, 10, 10]}, format="json")
    assert response.status_code == 400 and "box" in response.json()
    response = client.post(url, {"key_slice": 500, "box": [1, 1, 5, 5]}, format="json")
    assert response.status_code == 400 and "key_slice" in response.json()
    response = client.post(url, {"key_slice": 2, "box": [1, 1, 5]}, format="json")
    assert response.status_code == 400 and "box" in response.json()
    assert not InferenceJob.objects.exists()


def test_a_rounds_model_version_is_the_model_the_job_runs(
    lesion: dict[str, Any],
    workspace: dict[str, Any],
    phantom: Any,
    tmp_path: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from inference.engine import make_ct_phantom
    from inference.engine.learned import LearnedBackend, TrainingCase, train
    from inference.models import ModelVersion

    cases = []
    for seed in (11, 12):
        training = make_ct_phantom(seed=seed, shape=(24, 96, 96), n_lesions=2)
        volume = ImageVolume(training.image, training.spacing, "CT")
        for mask in training.lesion_masks:
            k, box = key_slice_and_box(mask)
            cases.append(TrainingCase(volume, LesionPrompt("x", k, box), mask))
    path = tmp_path / "model.joblib"
    train(cases, seed=0).save(path)
    model = ModelVersion.objects.create(
        name="learned r0", backend="inference.engine.learned.LearnedBackend", checkpoint=str(path)
    )
    round_ = workspace["imported"].task.round
    round_.model_version = model
    round_.save()

    reference = phantom.lesion_masks[0]
    job = request_segmentation(lesion, reference, django_capture_on_commit_callbacks)
    assert job.state == "succeeded", job.error
    assert job.model_version == model and job.result.author_model == model
    k, box = key_slice_and_box(reference)
    expected = LearnedBackend(model_path=str(path)).segment(
        ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0)),
        [LesionPrompt("x", k, box)],
    )
    np.testing.assert_array_equal(mask_version_load(job.result), expected.masks["x"])

    # a model file given to a backend that takes none fails the job with that reason
    model.backend = "inference.engine.default.ClassicalBackend"
    model.save()
    failed = request_segmentation(lesion, reference, django_capture_on_commit_callbacks)
    assert failed.state == "failed" and "takes no checkpoint" in failed.error


def test_a_job_whose_runs_keep_getting_killed_fails_with_the_reason(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A worker killed mid-job (SIGKILL, hard time limit) puts the message back; a job that
    never survives a run must not loop forever but fail, saying why."""
    from inference.jobs import MAX_ATTEMPTS

    job = request_segmentation(lesion, phantom.lesion_masks[0], django_capture_on_commit_callbacks)
    assert job.attempts == 1
    # As the database looks after MAX_ATTEMPTS deliveries whose workers all died mid-run.
    InferenceJob.objects.filter(pk=job.pk).update(
        state="running", attempts=MAX_ATTEMPTS, result=None, finished_at=None
    )
    assert segmentation_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.state == "failed" and f"stopped after {MAX_ATTEMPTS} attempts" in job.error
    assert job.attempts == MAX_ATTEMPTS
    polled = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert polled["state"] == "failed" and "interrupted" in polled["error"]
