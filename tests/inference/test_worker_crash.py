"""A worker killed in the middle of a segmentation: the job still completes, exactly once.

The slow test backend (tests/support/slow_backend.py) appends the id of the process running
``segment`` to a marker file and stalls on its first attempt only, so the kill always lands
mid-job, and the marker tells which process held the task and how many attempts ran.
"""

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from annotator.models import Lesion, MaskVersion
from inference import services
from inference.engine import ClassicalBackend, key_slice_and_box
from inference.models import InferenceJob
from tests.support.worker import broker_is_redis, running_worker

SLOW_BACKEND = "tests.support.slow_backend.SlowBackend"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.2)
    return value


def attempts(marker: Path) -> list[int]:
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []


def request(workspace: dict[str, Any], lesion: dict[str, Any], phantom: Any) -> InferenceJob:
    key_slice, box = key_slice_and_box(phantom.lesion_masks[0])
    return services.segmentation_request(
        lesion=Lesion.objects.get(pk=lesion["id"]),
        user=workspace["annotator"],
        key_slice=key_slice,
        box=list(box),
    )


def assert_done_once(job: InferenceJob, lesion: dict[str, Any]) -> None:
    job.refresh_from_db()
    assert job.state == InferenceJob.State.SUCCEEDED, job.error
    [version] = MaskVersion.objects.filter(lesion_id=lesion["id"])
    assert job.result_id == version.pk and version.source == "model"


@pytest.fixture
def slow(settings: Any, tmp_path: Path) -> dict[str, str]:
    """Jobs requested from now on run the slow backend; the worker's environment for it."""
    settings.INFERENCE_BACKEND = SLOW_BACKEND
    return {"INFERENCE_BACKEND": SLOW_BACKEND, "SLOW_BACKEND_MARKER": str(tmp_path / "attempts")}


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_killed_pool_process_is_replaced_and_the_job_runs_again_once(
    workspace: dict[str, Any],
    lesion: dict[str, Any],
    phantom: Any,
    slow: dict[str, str],
    media_root: Path,
    tmp_path: Path,
) -> None:
    """Prefork pool: the pool child holds the task. SIGKILL it; the worker's main process sees
    WorkerLostError and (reject_on_worker_lost) requeues the message; a new child runs it."""
    marker = Path(slow["SLOW_BACKEND_MARKER"])
    log = tmp_path / "worker.log"
    with running_worker(media_root=media_root, log=log, env=slow) as worker:
        job = request(workspace, lesion, phantom)
        [child] = wait_for(lambda: attempts(marker), 60, "the first attempt", log)
        assert child != worker.pid  # the pool child, not the main process, runs the task
        job.refresh_from_db()
        assert job.state == InferenceJob.State.RUNNING
        os.kill(child, signal.SIGKILL)
        wait_for(
            lambda: InferenceJob.objects.get(pk=job.pk).state != InferenceJob.State.RUNNING,
            90,
            "the job to finish after the kill",
            log,
        )
        assert_done_once(job, lesion)
        first, second = attempts(marker)
        assert second not in (first, worker.pid)
        assert "WorkerLostError" in worker.output()
        time.sleep(2)  # nothing else is delivered afterwards
        assert len(attempts(marker)) == 2
    assert_done_once(job, lesion)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_leaves_the_job_to_a_new_worker_that_completes_it_once(
    workspace: dict[str, Any],
    lesion: dict[str, Any],
    phantom: Any,
    slow: dict[str, str],
    media_root: Path,
    tmp_path: Path,
) -> None:
    """Solo pool: the worker's only process holds the task. SIGKILL it (nobody is left to
    requeue anything); a new worker gets the unacknowledged message back once the broker's
    visibility timeout has passed, and finishes the job that was left "running"."""
    if not broker_is_redis():
        pytest.skip(
            "the filesystem transport removes a message from its folder when it delivers it and "
            "has no visibility timeout: a message whose worker is SIGKILLed is lost (run with "
            "CELERY_BROKER_URL=redis://... for this test; the pool-process test covers requeue)"
        )
    marker = Path(slow["SLOW_BACKEND_MARKER"])
    log = tmp_path / "worker.log"
    with running_worker(media_root=media_root, log=log, env=slow, pool="solo") as first_worker:
        job = request(workspace, lesion, phantom)
        [holder] = wait_for(lambda: attempts(marker), 60, "the first attempt", log)
        assert holder == first_worker.pid
        first_worker.kill()
    job.refresh_from_db()
    assert job.state == InferenceJob.State.RUNNING and job.result is None

    quick_restore = {
        **slow,
        "CELERY_BROKER_TRANSPORT_OPTIONS": (
            '{"visibility_timeout": 2, "unacked_restore_interval": 1, '
            '"unacked_restore_throttle": 1}'
        ),
    }
    started = time.monotonic()
    with running_worker(
        media_root=media_root, log=log, env=quick_restore, pool="solo", purge=False
    ) as second_worker:
        wait_for(
            lambda: InferenceJob.objects.get(pk=job.pk).state != InferenceJob.State.RUNNING,
            60,
            "the new worker to finish the job",
            log,
        )
        assert_done_once(job, lesion)
        assert attempts(marker) == [holder, second_worker.pid]
        time.sleep(4)  # past the visibility timeout: the acknowledged message does not return
        assert attempts(marker) == [holder, second_worker.pid]
    assert_done_once(job, lesion)
    print(f"redelivered and completed {time.monotonic() - started:.1f} s after the restart")


@pytest.mark.django_db
def test_a_second_delivery_during_the_first_keeps_a_single_result(
    workspace: dict[str, Any], lesion: dict[str, Any], phantom: Any, monkeypatch: Any
) -> None:
    """Two deliveries of one job at once (a redelivery while the first still runs): the later
    claim wins; the earlier attempt's result is dropped instead of becoming a second version."""
    job = request_without_sending(workspace, lesion, phantom)
    original = ClassicalBackend.segment
    calls: list[int] = []

    def segment_with_redelivery(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first attempt, mid-run: the message is delivered again
            inner = services.segmentation_run(job_id=job.pk)
            assert inner is not None and inner.state == InferenceJob.State.SUCCEEDED
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassicalBackend, "segment", segment_with_redelivery)
    outer = services.segmentation_run(job_id=job.pk)
    assert len(calls) == 2
    assert outer is not None and outer.state == InferenceJob.State.SUCCEEDED
    assert_done_once(job, lesion)
    assert services.segmentation_run(job_id=job.pk) is None  # and a third finds it done


def request_without_sending(
    workspace: dict[str, Any], lesion: dict[str, Any], phantom: Any
) -> InferenceJob:
    """A queued job whose message this test delivers itself (on-commit hooks do not run)."""
    key_slice, box = key_slice_and_box(phantom.lesion_masks[0])
    Lesion.objects.filter(pk=lesion["id"]).update(key_slice=key_slice, box=list(box))
    return services.segmentation_enqueue(
        lesion=Lesion.objects.get(pk=lesion["id"]),
        user=workspace["annotator"],
        queue=services.INTERACTIVE_QUEUE,
    )


@pytest.mark.django_db
def test_a_job_past_its_soft_time_limit_fails_with_that_reason(
    workspace: dict[str, Any], lesion: dict[str, Any], phantom: Any, monkeypatch: Any
) -> None:
    def too_slow(*args: Any, **kwargs: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(ClassicalBackend, "segment", too_slow)
    job = services.segmentation_run(job_id=request_without_sending(workspace, lesion, phantom).pk)
    assert job is not None and job.state == InferenceJob.State.FAILED
    assert job.error == "the job ran past its time limit and was stopped"
    assert not MaskVersion.objects.filter(lesion_id=lesion["id"]).exists()
