"""Housekeeping that must work while workers are dead: jobs whose worker is gone are queued
again (or failed after their last attempt), and mask files whose version never committed are
removed.

It runs wherever someone looks, so that a dead worker is noticed even when no worker is left:
when a job or a round's pre-annotation is read through the API (scoped to what is read), every
``SWEEP_INTERVAL_S`` from ``celery beat`` (``manage.py serve`` embeds it in its worker), and
from ``manage.py sweep`` for operators.
"""

from typing import Any, TypeVar

from django.conf import settings
from django.db.models import QuerySet

from annotator.annotation.services import mask_files_sweep
from annotator.core import queues
from inference.jobs import (
    SEGMENTATION_TASK,
    TRAINING_TASK,
    job_send,
    owner_alive,
    requeue_lost,
)
from inference.models import EncodingJob, InferenceJob, TrainingJob

AnyJob = TypeVar("AnyJob", InferenceJob, TrainingJob, EncodingJob)


def send_again(job: InferenceJob | TrainingJob | EncodingJob) -> None:
    """Queue the job's task again, on the queue it was first sent to."""
    from inference.encoding import encoding_send

    if isinstance(job, InferenceJob):
        job_send(SEGMENTATION_TASK, job_id=job.pk, queue=job.queue)
    elif isinstance(job, EncodingJob):
        encoding_send(job)
    else:
        job_send(TRAINING_TASK, job_id=job.pk, queue=queues.TRAIN)


def jobs_recover(jobs: QuerySet[Any]) -> list[Any]:
    """Re-queue (or fail) the jobs of ``jobs`` whose worker is gone; returns those changed."""
    return requeue_lost(jobs, send=send_again)


def job_recover(job: AnyJob) -> AnyJob:
    """``job`` as it stands: re-queued (or failed) first if its worker is gone. Free for a job
    that is not running or whose owner lives (a poll of a job in progress costs no query)."""
    lost = job.state == "running" and not owner_alive(job)
    if lost and jobs_recover(type(job)._default_manager.filter(pk=job.pk)):
        job.refresh_from_db()
    return job


def sweep() -> dict[str, Any]:
    """Every job of each kind, and the pending mask files; what was done, for logs."""
    changed = [
        *jobs_recover(InferenceJob.objects.all()),
        *jobs_recover(TrainingJob.objects.all()),
        *jobs_recover(EncodingJob.objects.all()),
    ]
    return {
        "requeued": [f"{type(j).__name__} {j.pk}" for j in changed if j.state == "queued"],
        "failed": [f"{type(j).__name__} {j.pk}" for j in changed if j.state == "failed"],
        "orphan_files_removed": mask_files_sweep(older_than_s=settings.ORPHAN_GRACE_S),
    }
