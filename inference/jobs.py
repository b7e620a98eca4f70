"""The claim protocol every worker job follows (segmentation and training jobs alike).

A job's message is acknowledged late, so a worker that dies mid-job (SIGKILL, out of memory,
the hard time limit) puts it back on the queue and another worker runs it again. Each claim
stamps a new ``started_at``: that is the attempt's token, and only the attempt holding the
latest token may finish the job (:func:`still_mine` in a compare-and-set), so two deliveries
running at once never both record a result. Each claim also counts an attempt: a job whose
runs keep getting killed fails after :data:`MAX_ATTEMPTS` with the reason, instead of looping.
"""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3

Job = TypeVar("Job", bound=models.Model)


def claim(model: type[Job], job_id: int, *, reset: dict[str, Any] | None = None) -> Job | None:
    """Move a queued (or redelivered running) job to running; ``None`` when it is gone,
    finished, or has now used up its attempts (it is then failed with the reason).
    ``reset``: fields to set on every claim (progress starting over)."""
    name = model._meta.verbose_name
    with transaction.atomic():
        job: Any = model._default_manager.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("%s %s no longer exists", name, job_id)
            return None
        if job.state not in ("queued", "running"):
            return None
        if job.state == "running":
            log.warning("%s %s was running: redelivered, running it again", name, job_id)
        if job.attempts >= MAX_ATTEMPTS:
            job.state, job.finished_at = "failed", timezone.now()
            job.error = (
                f"stopped after {job.attempts} attempts: each run was interrupted (the worker "
                "died or the job hit its hard time limit)"
            )
            job.save(update_fields=["state", "finished_at", "error"])
            return None
        fields = {"state": "running", "started_at": timezone.now(), **(reset or {})}
        for field, value in fields.items():
            setattr(job, field, value)
        model._default_manager.filter(pk=job.pk).update(attempts=F("attempts") + 1, **fields)
        job.attempts += 1
        return job  # type: ignore[no-any-return]


def still_mine(job: Any) -> Any:
    """The job's row, if this attempt still owns it (running, same token): a queryset to
    ``update`` as a compare-and-set."""
    return type(job)._default_manager.filter(pk=job.pk, state="running", started_at=job.started_at)


def progress_writer(job: Any, *, offset: int = 0, tail: int = 0) -> Callable[[int, int], None]:
    """A progress callback ``(done, total)`` that writes ``offset + done`` of ``offset + total +
    tail`` on the job (while this attempt owns it), at most twice a second and always at the end."""
    last = 0.0

    def write(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last > 0.5 or done == total:
            last = now
            still_mine(job).update(
                progress_done=offset + done, progress_total=offset + total + tail
            )

    return write


def fail(job: Any, message: str) -> None:
    """Record the failure, unless a later attempt owns the job."""
    still_mine(job).update(state="failed", error=message, finished_at=timezone.now())
