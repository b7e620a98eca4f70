"""Pre-encoding volumes on the ``gpu-batch`` queue, so that an annotator's prompt runs the
decoder only.

LiteMedSAM's image encoder costs about a second a slice on a CPU; its decoder, tens of
milliseconds. When a task is claimed (``projects.task_services.task_claim_next``) or a round is
pre-annotated (``inference.batch.round_preannotate``), each volume gets one
:class:`~inference.models.EncodingJob` for the backend its segmentation jobs will use, provided
that backend has an ``encode`` method (LiteMedSAM and the backends built on it); none while
another waits or runs for the same volume. A worker runs it (:func:`encoding_run`): it reads the
volume as a segmentation job does and encodes every slice its store lacks (the store is per
machine, so the check is made there: a job for an encoded volume finishes at once with
``encoded`` 0). The worker keeps the embeddings in memory and in ``LITEMEDSAM_EMBEDDINGS_DIR``,
where the next segmentation job of any process on that machine finds them.

It never holds up the annotators: a delivery encodes for at most :data:`YIELD_AFTER_S`, and
stops sooner when an interactive job waits (a worker that serves both queues then takes it), and
queues the rest of the volume again; a failure is logged and written on the job, never raised to
the claim or the pre-annotation request that queued it. ``INFERENCE_PRE_ENCODE=false`` turns it
off.
"""

import importlib
import logging
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import SimpleITK as sitk
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotator.core import queues
from annotator.imaging.volumes import volume_read
from annotator.models import Volume
from inference.engine import EngineError, ImageVolume
from inference.engine.base import BACKEND_ALIASES
from inference.jobs import (
    ENCODING_TASK,
    claim,
    fail,
    heartbeat,
    job_send,
    progress_writer,
    still_mine,
    succeed,
)
from inference.models import EncodingJob, InferenceJob, ModelVersion
from inference.services import load_backend
from projects.models import Round, Task

log = logging.getLogger(__name__)

ENCODE_QUEUE = queues.BATCH
ACTIVE = (EncodingJob.State.QUEUED, EncodingJob.State.RUNNING)
# One delivery encodes for at most this long, then queues the rest of the volume again, so a
# worker serving several queues never disappears into one volume for minutes.
YIELD_AFTER_S = 60.0
# An interactive job queued within this long is an annotator waiting: a delivery yields to it.
INTERACTIVE_WAIT_S = 300.0


def can_pre_encode(backend: str) -> bool:
    """Whether the backend (a dotted path or alias) has an ``encode`` method. Imports its
    module, never the model: engine modules import torch only when a backend is built."""
    path = BACKEND_ALIASES.get(backend, backend)
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return False
    return callable(getattr(factory, "encode", None))


def volume_encode_enqueue(
    *, volume: Volume, model_version: ModelVersion | None, user: User | None = None
) -> EncodingJob | None:
    """Queue an encoding job for ``volume`` with the backend of ``model_version`` (None: the
    site's ``INFERENCE_BACKEND``), sent after commit; None when pre-encoding is off, the backend
    cannot encode, or a job for the volume is already queued or running."""
    backend = model_version.backend if model_version else settings.INFERENCE_BACKEND
    if not settings.INFERENCE_PRE_ENCODE or not can_pre_encode(backend):
        return None
    with transaction.atomic():
        # The volume's row serialises two claims of one series (copies of an agreement study).
        Volume.objects.select_for_update().filter(pk=volume.pk).first()
        if EncodingJob.objects.filter(volume=volume, state__in=ACTIVE).exists():
            return None
        job = EncodingJob.objects.create(
            volume=volume, backend=backend, model_version=model_version, requested_by=user
        )
        transaction.on_commit(lambda: encoding_send(job))
    return job


def encoding_send(job: EncodingJob) -> None:
    """Send the job's task to the batch queue."""
    job_send(ENCODING_TASK, job_id=job.pk, queue=ENCODE_QUEUE)


def task_pre_encode(*, task: Task, user: User | None = None) -> EncodingJob | None:
    """Queue the encoding of a claimed task's volume; a failure to do so is logged, never
    raised: the claim stands without it."""
    if not settings.INFERENCE_PRE_ENCODE:
        return None  # before any query: a claim costs what it did
    return _quietly(task.series.volume, task.round.model_version, user, f"task {task.pk}")


def task_claimed_pre_encode(*, task: Task, user: User, **signal: Any) -> None:
    """``projects.signals.task_claimed``'s receiver: :func:`task_pre_encode`."""
    task_pre_encode(task=task, user=user)


def round_pre_encode(
    *, round: Round, tasks: Iterable[Task], user: User | None = None
) -> list[EncodingJob]:
    """Queue the encoding of the volumes of ``tasks`` (of ``round``), each once; failures are
    logged, never raised."""
    seen: set[int] = set()
    jobs = []
    for task in tasks:
        if task.series_id in seen:
            continue
        seen.add(task.series_id)
        job = _quietly(task.series.volume, round.model_version, user, f"task {task.pk}")
        if job is not None:
            jobs.append(job)
    return jobs


def _quietly(
    volume: Volume, model_version: ModelVersion | None, user: User | None, what: str
) -> EncodingJob | None:
    try:
        with transaction.atomic():  # a savepoint: an error leaves the caller's transaction usable
            return volume_encode_enqueue(volume=volume, model_version=model_version, user=user)
    except Exception:
        log.exception("pre-encoding the volume of %s not queued", what)
        return None


def encoding_run(*, job_id: int) -> EncodingJob | None:
    """Run (part of) an encoding job; the outcome goes on the job. Idempotent: a finished job,
    or one that a live worker runs, is left alone; slices already encoded are not encoded
    again."""
    job = claim(EncodingJob, job_id)
    if job is None:
        return None
    with heartbeat(job):
        _encode(job)
    job.refresh_from_db()
    return job


def _interactive_waiting() -> bool:
    recent = timezone.now() - timedelta(seconds=INTERACTIVE_WAIT_S)
    return InferenceJob.objects.filter(
        queue=queues.INTERACTIVE, state=InferenceJob.State.QUEUED, created__gte=recent
    ).exists()


def _encode(job: EncodingJob) -> None:
    """One delivery: encode what the store lacks until done, or until it is time to yield."""
    started = time.perf_counter()
    stopped = False
    calls = 0

    def should_stop() -> bool:
        nonlocal stopped, calls
        calls += 1
        if calls == 1:
            return False  # every delivery encodes one batch at least: it always progresses
        stopped = (
            time.perf_counter() - started > YIELD_AFTER_S
            or _interactive_waiting()
            or not still_mine(job).exists()
        )
        return stopped

    try:
        volume = job.volume
        image = volume_read(volume, colour=True)  # as the segmentation jobs read it
        engine_volume = ImageVolume(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(image.GetSpacing()),
            modality=volume.series.modality,
            window=volume.series.study.project.window_preset(),
        )
        del image
        loaded = time.perf_counter()
        backend = load_backend(
            job.backend, job.model_version.checkpoint if job.model_version else ""
        )
        encode = getattr(backend, "encode", None)
        if encode is None:
            fail(job, f"backend {job.backend} has no image encoder to run ahead")
            return
        encoded = int(
            encode(
                engine_volume,
                progress=progress_writer(job, offset=job.encoded),
                should_stop=should_stop,
            )
        )
        timings = {"load": loaded - started, "encode": time.perf_counter() - loaded}
        with transaction.atomic():
            if stopped:
                _yield(job, encoded)
                return
            timings["total"] = time.perf_counter() - started
            succeed(job, encoded=F("encoded") + encoded, timings=timings)
    except EngineError as exc:
        log.warning("encoding job %s failed: %s", job.pk, exc)
        fail(job, str(exc))
    except (Volume.DoesNotExist, EncodingJob.DoesNotExist):
        fail(job, "the volume was deleted while the job ran")
    except SoftTimeLimitExceeded:
        fail(job, "the job ran past its time limit and was stopped")
    except Exception as exc:
        log.exception("encoding job %s failed", job.pk)
        fail(job, f"internal error: {type(exc).__name__}: {exc}")


def _yield(job: EncodingJob, encoded: int) -> None:
    """Queue the rest of the volume again (this delivery does not count as an attempt)."""
    requeued = still_mine(job).update(
        state=EncodingJob.State.QUEUED,
        attempts=F("attempts") - 1,
        heartbeat_at=None,
        encoded=F("encoded") + encoded,
    )
    if requeued:
        log.info("encoding job %s: yielded after %s slices; the rest queued again", job.pk, encoded)
        transaction.on_commit(lambda: encoding_send(job))
