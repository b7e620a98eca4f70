"""Segmentation jobs from the API: a box becomes a model mask version, failures show on the job."""

import io
import json
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotator.annotation.services import mask_version_load
from annotator.models import MaskVersion
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
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    reference = phantom.lesion_masks[0]
    job = request_segmentation(lesion, reference, django_capture_on_commit_callbacks)
    assert job.state == "succeeded", job.error
    version = job.result
    assert version is not None and version.source == "model" and version.author_user is None
    assert version.author_backend == settings.INFERENCE_BACKEND == "default"
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
    from inference.engine.learned import LearnedBackend
    from inference.engine.learned_fit import TrainingCase, train
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
    model.backend = "inference.engine.classical.ClassicalBackend"
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
    # As the database looks after MAX_ATTEMPTS deliveries whose workers all died mid-run
    # (the last one on another machine, silent for a minute).
    InferenceJob.objects.filter(pk=job.pk).update(
        state="running",
        attempts=MAX_ATTEMPTS,
        result=None,
        finished_at=None,
        worker="gpu9:4242:1",
        heartbeat_at=timezone.now() - timedelta(minutes=1),
    )
    assert segmentation_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.state == "failed" and f"stopped after {MAX_ATTEMPTS} attempts" in job.error
    assert job.attempts == MAX_ATTEMPTS
    polled = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert polled["state"] == "failed" and "interrupted" in polled["error"]


def running_elsewhere(job: Any, *, silent_s: float, attempts: int = 1) -> None:
    """Leave ``job`` as a worker on another machine leaves it when it dies mid-run: running,
    its last heartbeat ``silent_s`` seconds ago."""
    type(job).objects.filter(pk=job.pk).update(
        state="running",
        attempts=attempts,
        worker="gpu7:4242:4026531836",
        started_at=timezone.now() - timedelta(seconds=silent_s + 5),
        heartbeat_at=timezone.now() - timedelta(seconds=silent_s),
    )


def queued_job(lesion: dict[str, Any], phantom: Any, capture: Callable[..., Any]) -> InferenceJob:
    """A job requested through the API whose message no worker has taken."""
    key_slice, box = key_slice_and_box(phantom.lesion_masks[0])
    with capture(execute=False):
        response = lesion["client"].post(
            f"/api/lesions/{lesion['id']}/segment/",
            {"key_slice": key_slice, "box": list(box)},
            format="json",
        )
    return InferenceJob.objects.get(pk=response.json()["id"])


def test_a_job_whose_worker_went_silent_is_requeued_when_read(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Reading a job whose heartbeat is older than JOB_LOST_AFTER_S re-queues it with the reason
    and sends it again; run, it completes once, as attempt 2."""
    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    running_elsewhere(job, silent_s=31)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        body = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert body["state"] == "queued" and body["attempts"] == 1 and body["error"] == ""
    assert body["notice"].startswith("worker lost: gpu7 (process 4242) stopped during attempt 1")
    assert body["notice"].endswith("; re-queued (attempt 2 of 3)")
    assert len(sent) == 1
    sent[0]()  # the message, delivered (tests run tasks inline)
    job.refresh_from_db()
    assert job.state == "succeeded" and job.attempts == 2, job.error
    assert MaskVersion.objects.filter(lesion_id=lesion["id"]).count() == 1
    assert job.notice.endswith("re-queued (attempt 2 of 3)")  # kept as the job's history


def test_a_job_whose_worker_beats_is_left_running(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    running_elsewhere(job, silent_s=settings.JOB_LOST_AFTER_S - 10)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        body = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert body["state"] == "running" and body["notice"] == "" and not sent


def test_a_lost_job_on_its_last_attempt_fails_with_the_reason(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from inference.jobs import MAX_ATTEMPTS

    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    running_elsewhere(job, silent_s=120, attempts=MAX_ATTEMPTS)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        body = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert body["state"] == "failed" and not sent
    assert body["error"].startswith(f"stopped after {MAX_ATTEMPTS} attempts: worker lost: gpu7")
    assert body["finished_at"] is not None


def test_a_dead_process_on_this_machine_is_noticed_at_once(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A worker of this machine whose process is gone is lost even though its last beat is
    fresh: no need to wait for the threshold."""
    from inference.jobs import worker_id

    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    gone = subprocess.Popen(["true"])
    gone.wait()
    host, _, namespace = worker_id().split(":")
    InferenceJob.objects.filter(pk=job.pk).update(
        state="running",
        attempts=1,
        worker=f"{host}:{gone.pid}:{namespace}",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        body = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
    assert body["state"] == "queued" and f"(process {gone.pid})" in body["notice"]
    assert len(sent) == 1


def test_only_visible_jobs_are_swept_by_a_reader(
    lesion: dict[str, Any],
    phantom: Any,
    django_capture_on_commit_callbacks: Any,
    client_for: Callable[[Any], Any],
    make_user: Callable[..., Any],
) -> None:
    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    running_elsewhere(job, silent_s=120)
    outsider = client_for(make_user("nosy"))
    assert outsider.get(f"/api/jobs/{job.pk}/").status_code == 404
    job.refresh_from_db()
    assert job.state == "running"


def test_the_round_s_preannotation_shows_requeued_jobs_and_why(
    workspace: dict[str, Any],
    lesion: dict[str, Any],
    phantom: Any,
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from annotator.core.queues import BATCH as BATCH_QUEUE

    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    InferenceJob.objects.filter(pk=job.pk).update(queue=BATCH_QUEUE)
    running_elsewhere(job, silent_s=45)
    manager = client_for(workspace["manager"])
    with django_capture_on_commit_callbacks(execute=False) as sent:
        body = manager.get("/api/projects/alpha/rounds/0/preannotate/").json()
    assert (body["queued"], body["running"], len(sent)) == (1, 0, 1)
    [notice] = body["notices"]
    assert notice["job"] == job.pk and notice["state"] == "queued"
    assert notice["notice"].endswith("re-queued (attempt 2 of 3)")


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_advances_and_stops_with_ownership(
    lesion: dict[str, Any], phantom: Any, settings: Any
) -> None:
    from annotator.core.queues import INTERACTIVE as INTERACTIVE_QUEUE
    from annotator.models import Lesion
    from inference import jobs
    from inference.services import segmentation_enqueue

    settings.JOB_HEARTBEAT_S = 0.1
    key_slice, box = key_slice_and_box(phantom.lesion_masks[0])
    Lesion.objects.filter(pk=lesion["id"]).update(key_slice=key_slice, box=list(box))
    with pytest.MonkeyPatch.context() as patch:  # the message stays unsent: run it by hand
        patch.setattr("inference.tasks.run_segmentation_job.apply_async", lambda **kw: None)
        job = segmentation_enqueue(
            lesion=Lesion.objects.get(pk=lesion["id"]), user=None, queue=INTERACTIVE_QUEUE
        )
    claimed = jobs.claim(InferenceJob, job.pk)
    assert claimed is not None
    first = claimed.heartbeat_at
    with jobs.heartbeat(claimed):
        time.sleep(0.6)
        beat = InferenceJob.objects.get(pk=job.pk).heartbeat_at
        assert beat is not None and first is not None and beat > first
        InferenceJob.objects.filter(pk=job.pk).update(state="queued")  # taken from it
        time.sleep(0.3)
        stopped = InferenceJob.objects.get(pk=job.pk).heartbeat_at
        time.sleep(0.3)
        assert InferenceJob.objects.get(pk=job.pk).heartbeat_at == stopped


def test_a_training_job_whose_worker_went_silent_is_requeued_on_the_train_queue(
    workspace: dict[str, Any],
    client_for: Callable[[Any], Any],
    monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from inference.models import TrainingJob

    job = TrainingJob.objects.create(
        project=workspace["project"], round=workspace["task"].round, requested_by=None
    )
    running_elsewhere(job, silent_s=60)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "inference.tasks.run_training_job.apply_async", lambda **kw: sent.append(kw)
    )
    manager = client_for(workspace["manager"])
    with django_capture_on_commit_callbacks(execute=True):
        body = manager.get(f"/api/training-jobs/{job.pk}/").json()
    assert body["state"] == "queued" and body["notice"].endswith("(attempt 2 of 3)")
    assert sent == [{"kwargs": {"job_id": job.pk}, "queue": "train"}]


def test_the_sweep_command_and_the_beat_schedule(
    lesion: dict[str, Any], phantom: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from annotator.celery import app

    job = queued_job(lesion, phantom, django_capture_on_commit_callbacks)
    running_elsewhere(job, silent_s=60)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False) as sent:
        call_command("sweep", stdout=out)
    report = json.loads(out.getvalue())
    assert report["requeued"] == [f"InferenceJob {job.pk}"] and len(sent) == 1
    job.refresh_from_db()
    assert job.state == "queued"
    with pytest.raises(CommandError, match="--every"):
        call_command("sweep", "--every", "0")
    app.finalize()
    entry = app.conf.beat_schedule["sweep"]
    assert entry["task"] == "inference.tasks.sweep"
