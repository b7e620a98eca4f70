"""Inference jobs: requested by the API, run by workers, every outcome recorded on the job."""

import functools
import logging
import time
from typing import Any

import SimpleITK as sitk
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotator.models import Lesion
from annotator.services import Author, check_editable_by, check_prompt, mask_version_save
from annotator.volumes import volume_read
from inference.engine import EngineError, ImageVolume, LesionPrompt, SegmentationBackend
from inference.engine import load_backend as engine_load_backend
from inference.models import InferenceJob

log = logging.getLogger(__name__)

INTERACTIVE_QUEUE = "gpu-interactive"


@functools.cache
def load_backend(dotted_path: str) -> SegmentationBackend:
    """One backend per worker process: models are loaded once, not per job."""
    return engine_load_backend(dotted_path)


def segmentation_request(
    *, lesion: Lesion, user: User, key_slice: int, box: list[int]
) -> InferenceJob:
    """Record a box prompt on the lesion and queue a job that segments it in 3D."""
    from inference.tasks import run_segmentation_job

    task = lesion.task
    check_editable_by(task, user)
    box = check_prompt(task.series.volume, key_slice, box)  # type: ignore[assignment]
    with transaction.atomic():
        lesion.key_slice, lesion.box = key_slice, box
        lesion.save(update_fields=["key_slice", "box"])
        model_version = task.round.model_version
        job = InferenceJob.objects.create(
            lesion=lesion,
            prompt={"key_slice": key_slice, "box": box},
            backend=model_version.backend if model_version else settings.INFERENCE_BACKEND,
            model_version=model_version,
            queue=INTERACTIVE_QUEUE,
            requested_by=user,
        )
        transaction.on_commit(
            lambda: run_segmentation_job.apply_async(kwargs={"job_id": job.pk}, queue=job.queue)
        )
    return job


def _claim(job_id: int) -> InferenceJob | None:
    """Move a queued job to running; None when it is gone or already finished (a redelivery)."""
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("inference job %s no longer exists", job_id)
            return None
        if job.state in (InferenceJob.State.SUCCEEDED, InferenceJob.State.FAILED):
            return None
        job.state = InferenceJob.State.RUNNING
        job.started_at = timezone.now()
        job.save(update_fields=["state", "started_at"])
        return job


def _fail(job: InferenceJob, message: str) -> None:
    InferenceJob.objects.filter(pk=job.pk).update(
        state=InferenceJob.State.FAILED, error=message, finished_at=timezone.now()
    )


def segmentation_run(*, job_id: int) -> InferenceJob | None:
    """Run a segmentation job to the end; a failure is written on the job, never swallowed."""
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

        backend = load_backend(job.backend)
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
                InferenceJob.objects.filter(pk=job.pk).update(
                    progress_done=done, progress_total=total
                )

        result = backend.segment(engine_volume, [prompt], progress=progress)
        timings["engine"] = result.timings
        saved = time.perf_counter()
        with transaction.atomic():
            version = mask_version_save(
                lesion=lesion,
                mask=result.masks[prompt.lesion_id],
                source="model",
                author=Author(model=job.model_version, backend=job.backend),
            )
            timings["save"] = time.perf_counter() - saved
            timings["total"] = time.perf_counter() - started
            InferenceJob.objects.filter(pk=job.pk).update(
                state=InferenceJob.State.SUCCEEDED,
                result=version,
                timings=timings,
                finished_at=timezone.now(),
            )
    except EngineError as exc:
        _fail(job, str(exc))
    except Lesion.DoesNotExist:
        _fail(job, "the lesion was deleted while the job ran")
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
