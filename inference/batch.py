"""Pre-annotating a whole round on the ``gpu-batch`` queue.

No batch object: a round's pre-annotation is the set of its ``gpu-batch`` jobs, and its progress
is the count of the latest such job per lesion, by state. Starting it again queues only what is
still missing (lesions without a mask whose latest batch job failed or that never had one), so
it doubles as "retry the failures".
"""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet

from annotator.core import queues
from annotator.models import Lesion
from inference.encoding import round_pre_encode
from inference.models import InferenceJob
from inference.services import segmentation_enqueue
from projects.access import require_role
from projects.models import Role, Round

ACTIVE = (InferenceJob.State.QUEUED, InferenceJob.State.RUNNING)


def _round_lesions(round_: Round) -> QuerySet[Lesion]:
    return Lesion.objects.filter(task__round=round_)


def round_preannotate(*, round: Round, user: User) -> list[InferenceJob]:
    """Queue a segmentation job on ``gpu-batch`` for every prompted lesion of the round that
    has no mask yet and no job waiting or running; returns the jobs queued (managers only).
    The volumes of their tasks are then pre-encoded on the same queue, after them, where the
    backend has an image encoder to run ahead (``inference.encoding``; a failure to queue
    that is logged, never raised)."""
    require_role(user, round.project, Role.MANAGER)
    active = InferenceJob.objects.filter(lesion=OuterRef("pk"), state__in=ACTIVE)
    lesions = (
        _round_lesions(round)
        .filter(key_slice__isnull=False, box__isnull=False, mask_versions__isnull=True)
        .exclude(Exists(active))
        .select_related("task__round", "task__series__volume")
        .order_by("task_id", "id")
        .distinct()
    )
    with transaction.atomic():
        jobs = [
            segmentation_enqueue(lesion=lesion, user=user, queue=queues.BATCH) for lesion in lesions
        ]
        round_pre_encode(round=round, tasks=[job.lesion.task for job in jobs], user=user)
        return jobs


def round_preannotation_progress(round_: Round) -> dict[str, Any]:
    """``{total, queued, running, succeeded, failed, failures: [{job, lesion, task, error}],
    notices: [{job, lesion, task, state, notice}]}`` over the latest ``gpu-batch`` job of each
    lesion of the round; ``notices``: jobs still to finish that lost a worker and were
    re-queued."""
    jobs = InferenceJob.objects.filter(queue=queues.BATCH, lesion__task__round=round_)
    latest = jobs.values("lesion").annotate(last=Max("id")).values("last")
    current = InferenceJob.objects.filter(pk__in=latest)
    counts = {state: 0 for state in InferenceJob.State.values}
    for state in current.values_list("state", flat=True):
        counts[state] += 1
    failures = [
        {"job": pk, "lesion": lesion, "task": task, "error": error}
        for pk, lesion, task, error in current.filter(state=InferenceJob.State.FAILED)
        .order_by("id")
        .values_list("pk", "lesion_id", "lesion__task_id", "error")
    ]
    notices = [
        {"job": pk, "lesion": lesion, "task": task, "state": state, "notice": notice}
        for pk, lesion, task, state, notice in current.filter(state__in=ACTIVE)
        .exclude(notice="")
        .order_by("id")
        .values_list("pk", "lesion_id", "lesion__task_id", "state", "notice")
    ]
    return {"total": sum(counts.values()), **counts, "failures": failures, "notices": notices}
