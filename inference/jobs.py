"""The claim protocol every worker job follows (segmentation and training jobs alike).

A job's message is acknowledged late, so a worker that dies mid-job (SIGKILL, out of memory,
the hard time limit) puts it back on the queue and another worker runs it again. Each claim
stamps a new ``started_at``: that is the attempt's token, and only the attempt holding the
latest token may finish the job (:func:`still_mine` in a compare-and-set), so two deliveries
running at once never both record a result. Each claim also counts an attempt: a job whose
runs keep getting killed fails after :data:`MAX_ATTEMPTS` with the reason, instead of looping.

While an attempt runs, a thread in its process writes a heartbeat on the job (:func:`heartbeat`),
with the process that owns it (``worker``: host and process id). A worker killed outright
(SIGKILL, a lost machine) stops beating: :func:`requeue_lost` finds its job by the stale
heartbeat and queues it again (or fails it after its last attempt), with the reason in
``notice``, instead of leaving it "running" until the broker's visibility timeout (or forever,
on a broker that has none). A delivery of a job whose owner is still alive is a duplicate (the
broker's late redelivery of a message already re-queued): it is dropped, so a live attempt is
never restarted.
"""

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection, connections, models, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3

# The job tasks, by name. ``inference.tasks`` declares them as shims over the services that also
# send them, so the services send by name, through the Celery app's task registry, and the
# module graph keeps one direction (tasks -> services).
SEGMENTATION_TASK = "inference.tasks.run_segmentation_job"
ENCODING_TASK = "inference.tasks.run_encoding_job"
TRAINING_TASK = "inference.tasks.run_training_job"

Job = TypeVar("Job", bound=models.Model)


def _pid_namespace() -> str:
    """This process's pid namespace (Linux), so that a pid is only looked up where it names the
    same process (two containers may share a host name)."""
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        return ""


def worker_id() -> str:
    """This process, as a job's ``worker`` names it: ``host:pid:pid-namespace``."""
    return f"{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}"


def worker_label(worker: str) -> str:
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    return f"{host} (process {pid})" if pid else worker or "its worker"


def _local_pid(worker: str) -> int | None:
    """The process id of ``worker`` when it ran on this machine, in this pid namespace."""
    host, pid, namespace = [*worker.split(":"), "", ""][:3]
    same = host == socket.gethostname() and namespace and namespace == _pid_namespace()
    return int(pid) if same and pid.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        pass
    try:  # a killed process nobody has reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def lost_cutoff() -> datetime:
    """A running job whose heartbeat is older than this has lost its worker."""
    return timezone.now() - timedelta(seconds=settings.JOB_LOST_AFTER_S)


def owner_alive(job: Any) -> bool:
    """Whether the attempt that owns a running job still lives, as far as this process can
    tell: its heartbeat is recent and, when it ran on this machine, its process exists (a
    worker killed a second ago is gone, though its last beat is fresh)."""
    last = job.heartbeat_at or job.started_at  # no beat yet: a worker older than heartbeats
    if last is None or last < lost_cutoff():
        return False
    pid = _local_pid(job.worker)
    return pid is None or _pid_alive(pid)


def _give_up(job: Any, why: str, **also: Any) -> None:
    """Fail the job after its last attempt, with the reason (and ``also``'s fields)."""
    job.state, job.finished_at = "failed", timezone.now()
    job.error = f"stopped after {job.attempts} attempts: {why}"
    for field, value in also.items():
        setattr(job, field, value)
    job.save(update_fields=["state", "finished_at", "error", *also])


def claim(model: type[Job], job_id: int, *, reset: dict[str, Any] | None = None) -> Job | None:
    """Move a queued (or redelivered running) job to running; ``None`` when it is gone,
    finished, still owned by a live attempt (a duplicate delivery), or has now used up its
    attempts (it is then failed with the reason). ``reset``: fields to set on every claim
    (progress starting over)."""
    name = model._meta.verbose_name
    with transaction.atomic():
        job: Any = model._default_manager.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("%s %s no longer exists", name, job_id)
            return None
        if job.state not in ("queued", "running"):
            return None
        if job.state == "running":
            if owner_alive(job):
                log.info(
                    "%s %s is running on %s (heartbeat %s): duplicate delivery dropped",
                    name,
                    job_id,
                    job.worker,
                    job.heartbeat_at,
                )
                return None
            log.warning("%s %s was running on %s, now gone: run again", name, job_id, job.worker)
        if job.attempts >= MAX_ATTEMPTS:
            _give_up(job, "each run was interrupted (the worker died or hit the hard time limit)")
            return None
        now = timezone.now()
        fields = {
            "state": "running",
            "started_at": now,
            "heartbeat_at": now,
            "worker": worker_id(),
            **(reset or {}),
        }
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


def succeed(job: Any, **fields: Any) -> None:
    """Record the success with ``fields`` (the result, timings, ...), unless a later attempt
    owns the job."""
    still_mine(job).update(state="succeeded", finished_at=timezone.now(), **fields)


def fail(job: Any, message: str) -> None:
    """Record the failure, unless a later attempt owns the job."""
    still_mine(job).update(state="failed", error=message, finished_at=timezone.now())


@contextmanager
def heartbeat(job: Any) -> Iterator[None]:
    """While the block runs, a thread writes ``heartbeat_at`` on the job every
    ``JOB_HEARTBEAT_S`` for as long as this attempt owns it. The thread proves only that the
    process lives (a stuck one is stopped by the hard time limit); it uses its own database
    connection and closes it when it stops. A failed beat is retried at the next one: missing a
    few stays well within ``JOB_LOST_AFTER_S``."""
    stop = threading.Event()
    interval = settings.JOB_HEARTBEAT_S

    def beat() -> None:
        try:
            if connection.vendor == "sqlite":  # wait for the write lock one interval at most
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA busy_timeout = {max(1, int(interval * 1000))}")
            while not stop.wait(interval):
                try:
                    if not still_mine(job).update(heartbeat_at=timezone.now()):
                        return  # finished, failed or taken over: nothing left to vouch for
                except DatabaseError as exc:
                    log.warning("heartbeat of %s not written: %s", job, exc)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 1)


def requeue_lost(jobs: QuerySet[Any], *, send: Callable[[Any], None]) -> list[Any]:
    """Re-queue the running jobs of ``jobs`` whose worker is gone (stale heartbeat, or a dead
    process on this machine), or fail those on their last attempt, with the reason; ``send``
    queues a job's task again (after commit). Returns the jobs changed. Cheap when nothing is
    lost: one query on the running jobs."""
    cutoff = lost_cutoff()
    maybe_lost = (
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True)
        | Q(worker__startswith=f"{socket.gethostname()}:")  # its process can be looked up
    )
    fields = ("pk", "heartbeat_at", "started_at", "worker")
    changed = []
    for row in jobs.filter(maybe_lost, state="running").values(*fields):
        if owner_alive(jobs.model(**row)):
            continue
        with transaction.atomic():
            job = jobs.model._default_manager.select_for_update().filter(pk=row["pk"]).first()
            if job is None or job.state != "running" or owner_alive(job):
                continue  # finished, or beat again, meanwhile
            last = job.heartbeat_at or job.started_at
            why = (
                f"worker lost: {worker_label(job.worker)} stopped during attempt {job.attempts} "
                f"of {MAX_ATTEMPTS} (last heartbeat {last:%H:%M:%S} UTC)"
            )
            if job.attempts >= MAX_ATTEMPTS:
                _give_up(job, why, notice=why)
            else:
                job.state, job.heartbeat_at = "queued", None
                job.notice = f"{why}; re-queued (attempt {job.attempts + 1} of {MAX_ATTEMPTS})"
                job.save(update_fields=["state", "heartbeat_at", "notice"])
                transaction.on_commit(functools.partial(send, job))
            log.warning("%s %s: %s", type(job).__name__, job.pk, job.notice)
            changed.append(job)
    return changed


def job_send(task: str, *, job_id: int, queue: str) -> None:
    """Send the job's task (``SEGMENTATION_TASK``, ...) to ``queue``."""
    current_app.tasks[task].apply_async(kwargs={"job_id": job_id}, queue=queue)
