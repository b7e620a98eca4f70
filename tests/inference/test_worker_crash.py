"""A worker killed in the middle of a segmentation: the job still completes, exactly once.

The slow test backend (tests/support/slow_backend.py) appends the id of the process running
``segment`` to a marker file and stalls on its first attempt only, so the kill always lands
mid-job, and the marker tells which process held the task and how many attempts ran. A worker
killed whole leaves nobody to requeue its job: the sweep (inference/recovery.py) notices the
silence and queues it again, on the filesystem broker as on Redis.
"""

import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from annotator.celery import app
from annotator.core import queues
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


# A 1 s heartbeat and a job lost after 6 s of silence keep the test short; set these to 5 and 30
# to time the defaults.
HEARTBEAT_S = float(os.environ.get("CRASH_TEST_HEARTBEAT_S", "1"))
LOST_AFTER_S = float(os.environ.get("CRASH_TEST_LOST_AFTER_S", "6"))


def quick_loss(slow: dict[str, str], settings: Any) -> dict[str, str]:
    """The worker's environment with a short heartbeat and loss threshold (and the same
    threshold for the sweeps this test process runs through the API)."""
    settings.JOB_HEARTBEAT_S, settings.JOB_LOST_AFTER_S = HEARTBEAT_S, LOST_AFTER_S
    return {
        **slow,
        "ANNOTATOR_JOB_HEARTBEAT_S": str(HEARTBEAT_S),
        "ANNOTATOR_JOB_LOST_AFTER_S": str(LOST_AFTER_S),
    }


# On Redis the killed worker's message also comes back (after this visibility timeout): the
# job is then delivered twice, and must still run once.
QUICK_RESTORE = {
    "CELERY_BROKER_TRANSPORT_OPTIONS": (
        '{"visibility_timeout": 2, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}'
    )
}


def redis_unacked() -> int:
    """Messages a Redis worker holds without having acknowledged them (0 elsewhere)."""
    if not broker_is_redis():
        return 0
    with app.connection_for_write() as conn:
        return int(conn.default_channel.client.hlen("unacked"))  # type: ignore[attr-defined]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_shown_requeued_and_a_new_worker_completes_the_job_once(
    workspace: dict[str, Any],
    lesion: dict[str, Any],
    phantom: Any,
    slow: dict[str, str],
    media_root: Path,
    tmp_path: Path,
    settings: Any,
) -> None:
    """The whole worker (main and pool process) of another machine is SIGKILLed mid-job, on
    Redis or on the filesystem broker: nobody is left to requeue anything. Polling the job
    through the API shows it re-queued with the reason once its heartbeat is older than
    JOB_LOST_AFTER_S (LOST_AFTER_S here, 30 s by default); a new worker then completes it
    once."""
    env = quick_loss(slow, settings)
    marker = Path(slow["SLOW_BACKEND_MARKER"])
    log = tmp_path / "worker.log"
    with running_worker(media_root=media_root, log=log, env=env) as first_worker:
        job = request(workspace, lesion, phantom)
        [holder] = wait_for(lambda: attempts(marker), 60, "the first attempt", log)
        first_worker.kill_all()
        killed = time.monotonic()
        job.refresh_from_db()
        assert job.state == InferenceJob.State.RUNNING and job.worker.split(":")[1] == str(holder)
        # As if it had run on another machine: only its silence can tell that it is gone.
        InferenceJob.objects.filter(pk=job.pk).update(worker=f"gpu-elsewhere:{holder}:1")

        def polled() -> dict[str, Any] | None:
            body: dict[str, Any] = lesion["client"].get(f"/api/jobs/{job.pk}/").json()
            return body if body["state"] != InferenceJob.State.RUNNING else None

        shown = wait_for(polled, 60, "the API to show the job re-queued", log)
        detected = time.monotonic() - killed
    assert shown["state"] == "queued", shown
    assert shown["notice"].startswith("worker lost:"), shown
    assert shown["notice"].endswith("re-queued (attempt 2 of 3)"), shown
    assert shown["attempts"] == 1 and shown["result"] is None
    # The threshold, less the last beat's age, plus polling: within a minute in any case.
    assert LOST_AFTER_S - HEARTBEAT_S - 1 < detected < min(LOST_AFTER_S + 5, 60)

    log = tmp_path / "second-worker.log"
    with running_worker(
        media_root=media_root, log=log, env={**env, **QUICK_RESTORE}, purge=False
    ) as second_worker:
        wait_for(
            lambda: InferenceJob.objects.get(pk=job.pk).state == InferenceJob.State.SUCCEEDED,
            60,
            "the new worker to complete the job",
            log,
        )
        assert_done_once(job, lesion)
        wait_for(lambda: redis_unacked() == 0, 30, "the restored message to be dropped", log)
        time.sleep(3)  # nothing else is delivered afterwards
        first, second = attempts(marker)
        assert first == holder and second not in (holder, second_worker.pid)
        # Redis: the sweep's message and the killed worker's own, restored; the filesystem
        # broker lost that one. Either way the job ran once.
        received = second_worker.output().count("run_segmentation_job[")
        assert received >= (2 if broker_is_redis() else 1), second_worker.output()
    assert_done_once(job, lesion)
    job.refresh_from_db()
    assert job.attempts == 2 and "re-queued (attempt 2 of 3)" in job.notice
    print(f"shown re-queued {detected:.1f} s after the kill")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_s_job_is_recovered_by_the_next_worker_s_beat(
    workspace: dict[str, Any],
    lesion: dict[str, Any],
    phantom: Any,
    slow: dict[str, str],
    media_root: Path,
    tmp_path: Path,
    settings: Any,
) -> None:
    """Nobody polls: the only worker (solo pool) is SIGKILLed, and the next worker started,
    with celery beat embedded as `manage.py serve` runs it, sweeps the job back to the queue
    and completes it once, on either broker."""
    env = {**quick_loss(slow, settings), "ANNOTATOR_SWEEP_INTERVAL_S": "1"}
    marker = Path(slow["SLOW_BACKEND_MARKER"])
    log = tmp_path / "worker.log"
    with running_worker(media_root=media_root, log=log, env=env, pool="solo") as first_worker:
        job = request(workspace, lesion, phantom)
        [holder] = wait_for(lambda: attempts(marker), 60, "the first attempt", log)
        assert holder == first_worker.pid
        first_worker.kill_all()
    job.refresh_from_db()
    assert job.state == InferenceJob.State.RUNNING and job.result is None

    started = time.monotonic()
    with running_worker(
        media_root=media_root,
        log=log,
        env=env,
        pool="solo",
        purge=False,
        beat_schedule=tmp_path / "celerybeat-schedule",
    ) as second_worker:
        wait_for(
            lambda: InferenceJob.objects.get(pk=job.pk).state == InferenceJob.State.SUCCEEDED,
            60,
            "the new worker's sweep and run",
            log,
        )
        assert_done_once(job, lesion)
        assert attempts(marker) == [holder, second_worker.pid]
        assert "worker lost" in second_worker.output()
    job.refresh_from_db()
    assert job.attempts == 2 and job.notice.endswith("re-queued (attempt 2 of 3)")
    print(f"swept and completed {time.monotonic() - started:.1f} s after the restart")


@pytest.mark.django_db
def test_a_delivery_while_a_live_attempt_runs_is_dropped(
    workspace: dict[str, Any], lesion: dict[str, Any], phantom: Any, monkeypatch: Any
) -> None:
    """A second delivery of a job whose attempt is alive (fresh heartbeat, its process exists:
    a late redelivery of a message already re-queued) does nothing: the live attempt is not
    restarted, and its result is the only one."""
    job = request_without_sending(workspace, lesion, phantom)
    original = ClassicalBackend.segment
    inner: list[Any] = []

    def segment_with_redelivery(self: Any, *args: Any, **kwargs: Any) -> Any:
        inner.append(services.segmentation_run(job_id=job.pk))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassicalBackend, "segment", segment_with_redelivery)
    outer = services.segmentation_run(job_id=job.pk)
    assert inner == [None]  # dropped, without segmenting
    assert outer is not None and outer.state == InferenceJob.State.SUCCEEDED and outer.attempts == 1
    assert_done_once(job, lesion)


@pytest.mark.django_db
def test_a_second_delivery_after_the_owner_went_silent_keeps_a_single_result(
    workspace: dict[str, Any], lesion: dict[str, Any], phantom: Any, monkeypatch: Any
) -> None:
    """Two deliveries of one job at once, the first attempt's worker looking gone (no heartbeat
    for longer than JOB_LOST_AFTER_S, e.g. a network partition): the later claim wins; the
    earlier attempt's result is dropped instead of becoming a second version."""
    job = request_without_sending(workspace, lesion, phantom)
    original = ClassicalBackend.segment
    calls: list[int] = []

    def segment_with_redelivery(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first attempt, mid-run, silent: the message is delivered again
            InferenceJob.objects.filter(pk=job.pk).update(
                worker="gpu9:4242:1", heartbeat_at=timezone.now() - timedelta(minutes=1)
            )
            inner = services.segmentation_run(job_id=job.pk)
            assert inner is not None and inner.state == InferenceJob.State.SUCCEEDED
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassicalBackend, "segment", segment_with_redelivery)
    outer = services.segmentation_run(job_id=job.pk)
    assert len(calls) == 2
    assert outer is not None and outer.state == InferenceJob.State.SUCCEEDED
    assert outer.attempts == 2
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
        queue=queues.INTERACTIVE,
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
