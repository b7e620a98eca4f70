"""Pre-annotating a round on gpu-batch: what is queued, progress by state, retries, priority."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annotator.annotation.services import Author, mask_version_load, mask_version_save
from annotator.models import Lesion, MaskVersion
from inference import services
from inference.batch import round_preannotate, round_preannotation_progress
from inference.engine import dice, key_slice_and_box
from inference.models import InferenceJob
from tests.support.worker import broker_is_redis, purge_queues, running_worker

URL = "/api/projects/alpha/rounds/0/preannotate/"


def prompted(task: Any, phantom: Any, index: int = 0) -> Lesion:
    key_slice, box = key_slice_and_box(phantom.lesion_masks[index])
    return Lesion.objects.create(
        task=task, lesion_class="tumour", key_slice=key_slice, box=list(box)
    )


@pytest.fixture
def round_lesions(
    workspace: dict[str, Any], import_volume: Callable[[Any], Any], phantom: Any
) -> dict[str, Lesion]:
    """Two tasks: three prompted lesions without a mask, one without a prompt, one with a mask."""
    first = workspace["task"]
    second = import_volume(workspace["project"]).task
    lesions = {
        "a": prompted(first, phantom, 0),
        "b": prompted(first, phantom, 1),
        "c": prompted(second, phantom, 0),
        "unprompted": Lesion.objects.create(task=first, lesion_class="node"),
        "masked": prompted(second, phantom, 1),
    }
    shape = workspace["imported"].volume.shape_zyx
    mask_version_save(
        lesion=lesions["masked"],
        mask=np.zeros(shape, bool),
        source="human",
        author=Author(user=workspace["manager"]),
    )
    return lesions


@pytest.mark.django_db
def test_the_round_is_preannotated_through_the_api(
    workspace: dict[str, Any],
    round_lesions: dict[str, Lesion],
    phantom: Any,
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(workspace["manager"])
    assert client.get(URL).json() == {
        "total": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "failures": [],
        "notices": [],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL)
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["started"], body["total"], body["queued"]) == (3, 3, 3)
    body = client.get(URL).json()  # the jobs ran when the request's transaction committed
    assert (body["total"], body["queued"], body["succeeded"]) == (3, 0, 3)
    jobs = InferenceJob.objects.all()
    assert {job.lesion_id for job in jobs} == {round_lesions[k].pk for k in "abc"}
    assert {job.queue for job in jobs} == {"gpu-batch"}
    assert {job.requested_by_id for job in jobs} == {workspace["manager"].pk}
    for key, index in (("a", 0), ("b", 1), ("c", 0)):
        [version] = MaskVersion.objects.filter(lesion=round_lesions[key])
        assert version.source == "model"
        assert dice(mask_version_load(version), phantom.lesion_masks[index]) > 0.8
    assert MaskVersion.objects.filter(lesion=round_lesions["unprompted"]).count() == 0
    assert MaskVersion.objects.filter(lesion=round_lesions["masked"]).count() == 1
    # started again: every prompted lesion has a mask now, nothing to do
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(URL).json()
    assert again["started"] == 0 and again["succeeded"] == 3 and again["total"] == 3


@pytest.mark.django_db
def test_failures_are_listed_with_their_reasons_and_retried(
    workspace: dict[str, Any],
    round_lesions: dict[str, Lesion],
    settings: Any,
    client_for: Callable[[Any], Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(workspace["manager"])
    settings.INFERENCE_BACKEND = "inference.engine.nowhere.Backend"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(URL)
    body = client.get(URL).json()
    assert (body["total"], body["failed"], body["succeeded"]) == (3, 3, 0)
    failure = body["failures"][0]
    assert set(failure) == {"job", "lesion", "task", "error"}
    assert "inference.engine.nowhere" in failure["error"]
    settings.INFERENCE_BACKEND = "inference.engine.classical.ClassicalBackend"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(URL).json()["started"] == 3
    body = client.get(URL).json()
    # the latest job of each lesion counts: the retries succeeded, the failures are history
    assert (body["total"], body["succeeded"], body["failed"]) == (3, 3, 0)
    assert InferenceJob.objects.count() == 6


@pytest.mark.django_db
def test_queued_jobs_are_not_queued_twice_and_progress_counts_states(
    workspace: dict[str, Any], round_lesions: dict[str, Lesion]
) -> None:
    jobs = round_preannotate(round=workspace["task"].round, user=workspace["manager"])
    assert len(jobs) == 3  # on-commit hooks do not run here: the jobs stay queued
    assert round_preannotate(round=workspace["task"].round, user=workspace["manager"]) == []
    InferenceJob.objects.filter(pk=jobs[0].pk).update(state="running")
    progress = round_preannotation_progress(workspace["task"].round)
    assert {k: progress[k] for k in ("total", "queued", "running")} == {
        "total": 3,
        "queued": 2,
        "running": 1,
    }


@pytest.mark.django_db
def test_a_lesion_masked_while_its_job_waited_is_not_overwritten(
    workspace: dict[str, Any], round_lesions: dict[str, Lesion]
) -> None:
    [job, *_] = round_preannotate(round=workspace["task"].round, user=workspace["manager"])
    human = mask_version_save(
        lesion=job.lesion,
        mask=np.ones(workspace["imported"].volume.shape_zyx, bool),
        source="human",
        author=Author(user=workspace["manager"]),
    )
    done = services.segmentation_run(job_id=job.pk)
    assert done is not None and done.state == "failed" and done.error.startswith("skipped: ")
    assert list(MaskVersion.objects.filter(lesion=job.lesion)) == [human]


@pytest.mark.django_db
def test_only_managers_start_or_watch_it(
    workspace: dict[str, Any], round_lesions: dict[str, Lesion], client_for: Any
) -> None:
    for who, expected in (("annotator", 403), ("reviewer", 403), ("outsider", 404)):
        client = client_for(workspace[who])
        assert client.get(URL).status_code == expected
        assert client.post(URL).status_code == expected
    manager = client_for(workspace["manager"])
    assert manager.get("/api/projects/alpha/rounds/7/preannotate/").status_code == 404
    assert not InferenceJob.objects.exists()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_one_worker_on_both_gpu_queues_serves_interactive_prompts_first(
    workspace: dict[str, Any],
    phantom: Any,
    media_root: Path,
    tmp_path: Path,
) -> None:
    """Three batch jobs and two interactive ones wait; one worker `-Q gpu-interactive,gpu-batch`
    starts: with Redis's "priority" queue order it runs both interactive jobs before any batch
    job (round-robin would alternate: interactive, batch, interactive, ...)."""
    if not broker_is_redis():
        pytest.skip(
            "queue priority needs Redis's queue_order_strategy; the filesystem transport "
            "consumes queues round-robin (README: a dedicated interactive worker per GPU)"
        )
    from annotator.celery import app

    task = workspace["task"]
    lesions = [prompted(task, phantom) for _ in range(5)]
    app.conf.task_always_eager = False
    try:
        purge_queues()
        queues = ["gpu-batch"] * 3 + ["gpu-interactive"] * 2
        for lesion, queue in zip(lesions, queues, strict=True):
            services.segmentation_enqueue(lesion=lesion, user=workspace["manager"], queue=queue)
    finally:
        app.conf.task_always_eager = True
    log = tmp_path / "worker.log"
    with running_worker(
        media_root=media_root,
        log=log,
        queues=["gpu-interactive", "gpu-batch"],
        pool="solo",
        purge=False,
    ):
        deadline = time.monotonic() + 90
        while InferenceJob.objects.exclude(state="succeeded").exists():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    order = list(InferenceJob.objects.order_by("started_at").values_list("queue", flat=True))
    assert order == ["gpu-interactive"] * 2 + ["gpu-batch"] * 3
