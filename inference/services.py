"""Inference jobs: requested by the API, run by workers, every outcome recorded on the job."""

import functools
import logging
import os
import time
from typing import Any

import SimpleITK as sitk
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotator.errors import InvalidInput
from annotator.models import Lesion
from annotator.services import Author, check_editable_by, check_prompt, mask_version_save
from annotator.volumes import volume_read
from inference.engine import EngineError, ImageVolume, LesionPrompt, SegmentationBackend
from inference.engine import load_backend as engine_load_backend
from inference.models import InferenceJob

log = logging.getLogger(__name__)

INTERACTIVE_QUEUE = "gpu-interactive"
BATCH_QUEUE = "gpu-batch"


@functools.cache
def load_backend(dotted_path: str, checkpoint: str = "") -> SegmentationBackend:
    """One backend per model per worker process: models are loaded once, not per job."""
    return engine_load_backend(dotted_path, checkpoint=checkpoint_path(checkpoint) or None)


def checkpoint_path(checkpoint: str) -> str:
    """A ModelVersion's checkpoint as a local path: an absolute path on the workers is used as
    it is; anything else is a key in the file storage (models trained here)."""
    if not checkpoint or os.path.isabs(checkpoint):
        return checkpoint
    return default_storage.path(checkpoint)


def segmentation_request(
    *, lesion: Lesion, user: User, key_slice: int, box: list[int]
) -> InferenceJob:
    """Record a box prompt on the lesion and queue a job that segments it in 3D."""
    task = lesion.task
    check_editable_by(task, user)
    box = check_prompt(task.series.volume, key_slice, box)  # type: ignore[assignment]
    with transaction.atomic():
        lesion.key_slice, lesion.box = key_slice, box
        lesion.save(update_fields=["key_slice", "box"])
        return segmentation_enqueue(lesion=lesion, user=user, queue=INTERACTIVE_QUEUE)


def segmentation_enqueue(*, lesion: Lesion, user: User | None, queue: str) -> InferenceJob:
    """Create a job for the lesion's recorded prompt and send it to ``queue`` after commit.

    The lesion must have its key slice and box; the caller checks who may ask.
    """
    from inference.tasks import run_segmentation_job

    if lesion.key_slice is None or lesion.box is None:
        raise InvalidInput(f"lesion {lesion.pk} has no prompt (key slice and box) to segment")
    with transaction.atomic():
        model_version = lesion.task.round.model_version
        job = InferenceJob.objects.create(
            lesion=lesion,
            prompt={"key_slice": lesion.key_slice, "box": list(lesion.box)},
            backend=model_version.backend if model_version else settings.INFERENCE_BACKEND,
            model_version=model_version,
            queue=queue,
            requested_by=user,
        )
        transaction.on_commit(
            lambda: run_segmentation_job.apply_async(kwargs={"job_id": job.pk}, queue=job.queue)
        )
    return job


def _claim(job_id: int) -> InferenceJob | None:
    """Move a queued job to running; None when it is gone or already finished (a redelivery).

    A job found "running" is claimed again: its message came back because the worker that had it
    died (acks_late). Each claim stamps a new ``started_at``, which is the attempt's token: only
    the latest attempt may finish the job (the compare-and-set in :func:`segmentation_run`), so
    a second delivery running at the same time as the first can never add a second version.
    """
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("inference job %s no longer exists", job_id)
            return None
        if job.state in (InferenceJob.State.SUCCEEDED, InferenceJob.State.FAILED):
            return None
        if job.state == InferenceJob.State.RUNNING:
            log.warning("inference job %s was running: redelivered, running it again", job_id)
        job.state = InferenceJob.State.RUNNING
        job.started_at = timezone.now()
        job.save(update_fields=["state", "started_at"])
        return job


def _still_mine(job: InferenceJob) -> Any:
    """The job's row, if this attempt is still the one that owns it (running, same token)."""
    return InferenceJob.objects.filter(
        pk=job.pk, state=InferenceJob.State.RUNNING, started_at=job.started_at
    )


def _fail(job: InferenceJob, message: str) -> None:
    _still_mine(job).update(
        state=InferenceJob.State.FAILED, error=message, finished_at=timezone.now()
    )


def segmentation_run(*, job_id: int) -> InferenceJob | None:
    """Run a segmentation job to the end; a failure is written on the job, never swallowed.

    Idempotent: a redelivered message for a finished job does nothing, and of two attempts on
    the same job only the latest claim saves its result (the other's is dropped).
    """
    job = _claim(job_id)
    if job is None:
        return None
    timings: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        assert job.started_at is not None
        timings["queued"] = (job.started_at - job.created).total_seconds()
        lesion = job.lesion
        volume = lesion.task.series.volume
        image = volume_read(volume)
        engine_volume = ImageVolume(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(image.GetSpacing()),
            modality=volume.series.modality,
            window=_window(lesion),
        )
        timings["load"] = time.perf_counter() - started

        backend = load_backend(
            job.backend, job.model_version.checkpoint if job.model_version else ""
        )
        prompt = LesionPrompt(
            lesion_id=str(lesion.pk),
            key_slice=int(job.prompt["key_slice"]),
            box=tuple(job.prompt["box"]),
        )
        last_write = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last_write
            now = time.perf_counter()
            if now - last_write > 0.5 or done == total:
                last_write = now
                _still_mine(job).update(progress_done=done, progress_total=total)

        result = backend.segment(engine_volume, [prompt], progress=progress)
        timings["engine"] = result.timings
        saved = time.perf_counter()
        with transaction.atomic():
            # Compare-and-set first: it locks the row (PostgreSQL) or the database (SQLite)
            # until the mask version is saved, and fails when a later attempt claimed the job.
            if not _still_mine(job).update(finished_at=timezone.now()):
                log.warning("inference job %s: a later attempt owns it; result dropped", job.pk)
                job.refresh_from_db()
                return job
            if job.queue == BATCH_QUEUE and lesion.mask_versions.exists():
                _still_mine(job).update(
                    state=InferenceJob.State.FAILED,
                    error="skipped: the lesion got a mask while the pre-annotation job waited",
                )
                job.refresh_from_db()
                return job
            version = mask_version_save(
                lesion=lesion,
                mask=result.masks[prompt.lesion_id],
                source="model",
                author=Author(model=job.model_version, backend=job.backend),
            )
            timings["save"] = time.perf_counter() - saved
            timings["total"] = time.perf_counter() - started
            _still_mine(job).update(
                state=InferenceJob.State.SUCCEEDED,
                result=version,
                timings=timings,
                finished_at=timezone.now(),
            )
    except EngineError as exc:
        _fail(job, str(exc))
    except Lesion.DoesNotExist:
        _fail(job, "the lesion was deleted while the job ran")
    except SoftTimeLimitExceeded:
        _fail(job, "the job ran past its time limit and was stopped")
    except Exception as exc:
        log.exception("inference job %s failed", job.pk)
        _fail(job, f"internal error: {type(exc).__name__}: {exc}")
    job.refresh_from_db()
    return job


def _window(lesion: Lesion) -> tuple[float, float] | None:
    """The project's first window preset (center, width) scales CT intensities for the model."""
    presets = lesion.task.round.project.window_presets
    if not presets:
        return None
    return (float(presets[0]["center"]), float(presets[0]["width"]))
