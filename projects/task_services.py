"""Every write to tasks and reviews goes through these functions: a series queued as a task, the
claim of the next task, assignment and release by managers, submission, review and reopening.

Projects, memberships and rounds are written by ``projects.services``.
"""

import math
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from annotator.annotation.audit import audit_record
from annotator.core.errors import Conflict, Forbidden, InvalidInput
from annotator.models import MaskVersion
from projects.access import role_of
from projects.models import Assignment, AuditEvent, Ordering, Project, Review, Role, Round, Task
from projects.services import current_round
from projects.signals import task_claimed


def task_create(*, series: Any) -> Task | None:
    """Queue a series in its project's open round (None when no round is open).

    An agreement study (``annotators_per_task`` N > 1) gets N copies of the task, each claimed by
    a different annotator; the first copy is returned.
    """
    project = series.study.project
    round_ = current_round(project)
    if round_ is None:
        return None
    copies = [
        Task.objects.get_or_create(round=round_, series=series, copy=k)[0]
        for k in range(max(1, project.annotators_per_task))
    ]
    return copies[0]


def task_set_model_confidence(*, task: Task, confidence: float | None) -> Task:
    """Record the model's confidence in its pre-annotation (low_confidence ordering)."""
    if confidence is not None and not math.isfinite(confidence):
        raise InvalidInput("confidence must be a finite number", fields={"confidence": ["finite"]})
    task.model_confidence = confidence
    task.save(update_fields=["model_confidence", "updated"])
    return task


def _queue_order(project: Project) -> list[Any]:
    if project.ordering == Ordering.LOW_CONFIDENCE:
        return [F("model_confidence").asc(nulls_last=True), "-priority", "id"]
    return ["-priority", "id"]


def task_claim_next(*, user: User, project: Project) -> Task | None:
    """The annotator's next task: their own rejected or open task first, else a fresh claim.

    In ``assigned`` projects only tasks a manager assigned to the user are served. In the pool a
    claim is a compare-and-set on the task's state, so no two annotators ever get the same task;
    on PostgreSQL, ``SKIP LOCKED`` lets concurrent claims pass each other instead of queueing.
    In an agreement study, series the user already has a copy of are skipped. The task's volume
    is then pre-encoded on the batch queue where the backend has an image encoder to run ahead
    (``inference.encoding``, subscribed to ``projects.signals.task_claimed``; never at the
    claim's expense).
    """
    task = _claim_next(user=user, project=project)
    if task is not None:
        task_claimed.send(sender=Task, task=task, user=user)
    return task


def _claim_next(*, user: User, project: Project) -> Task | None:
    own = (
        Task.objects.filter(round__project=project, assignee_id=user.pk)
        .filter(Q(state=Task.State.REJECTED) | Q(state=Task.State.ASSIGNED))
        .order_by("-state", "-priority", "id")  # descending: "rejected" before "assigned"
        .first()
    )
    if own is not None:
        if own.claimed_at is None:  # assigned by a manager: the annotator starts it now
            own.claimed_at = timezone.now()
            own.save(update_fields=["claimed_at", "updated"])
        return own
    if project.assignment == Assignment.ASSIGNED:
        return None
    round_ids = list(project.rounds.filter(state=Round.State.OPEN).values_list("pk", flat=True))
    if not round_ids:
        return None
    for _attempt in range(20):
        try:
            with transaction.atomic():
                queue = Task.objects.filter(round_id__in=round_ids, state=Task.State.UNASSIGNED)
                if project.annotators_per_task > 1:
                    mine = Task.objects.filter(
                        round_id=OuterRef("round_id"),
                        series_id=OuterRef("series_id"),
                        assignee_id=user.pk,
                    )
                    queue = queue.exclude(Exists(mine))
                queue = queue.order_by(*_queue_order(project))
                if connection.features.has_select_for_update_skip_locked:
                    queue = queue.select_for_update(skip_locked=True, of=("self",))
                if connection.vendor == "postgresql":
                    _plan_with_values()
                candidate = queue.first()
                if candidate is None:
                    return None
                now = timezone.now()
                claimed = Task.objects.filter(pk=candidate.pk, state=Task.State.UNASSIGNED).update(
                    state=Task.State.ASSIGNED, assignee=user, claimed_at=now, updated=now
                )
                if claimed:
                    audit_record(project=project, task=candidate, actor=user, action="task.claimed")
                    candidate.state, candidate.assignee = Task.State.ASSIGNED, user
                    candidate.claimed_at = candidate.updated = now
                    return candidate
        except IntegrityError:  # a concurrent claim gave this user another copy of the series
            continue
    raise Conflict("the queue is too busy right now; try again")


def _plan_with_values() -> None:
    """Plan this transaction's queries with their parameters' values, never a cached generic plan.

    The queue's partial indexes hold only unassigned tasks; a generic plan of a prepared claim
    query, which does not know that the state parameter is 'unassigned', cannot use them and walks
    every project's queue instead (10x slower with a large project beside a small one).
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")


def _locked(task: Task) -> Task:
    return Task.objects.select_for_update().select_related("round__project").get(pk=task.pk)


def task_assign(*, task: Task, user: User, actor: User) -> Task:
    """A manager gives an open (or someone else's untouched) task to an annotator."""
    with transaction.atomic():
        task = _locked(task)
        project = task.round.project
        if role_of(user, project) not in (Role.ANNOTATOR, Role.MANAGER):
            raise InvalidInput(
                f"{user.get_username()!r} is not an annotator of project {project.slug!r}",
                fields={"user": ["not an annotator of this project"]},
            )
        if task.state not in (Task.State.UNASSIGNED, Task.State.ASSIGNED):
            raise Conflict(f"a task in state {task.state!r} cannot be assigned")
        other_copy = Task.objects.filter(
            round_id=task.round_id, series_id=task.series_id, assignee_id=user.pk
        ).exclude(pk=task.pk)
        if other_copy.exists():
            raise Conflict(
                f"{user.get_username()!r} already has a copy of this series: "
                "an agreement study needs independent annotators"
            )
        previous = task.assignee_id
        task.state, task.assignee, task.claimed_at = Task.State.ASSIGNED, user, None
        task.save(update_fields=["state", "assignee", "claimed_at", "updated"])
        audit_record(
            project=project,
            task=task,
            actor=actor,
            action="task.assigned",
            data={"user": user.pk, "username": user.get_username(), "previous": previous},
        )
    return task


def task_release(*, task: Task, actor: User) -> Task:
    """Return an assigned, not yet submitted task to the pool."""
    with transaction.atomic():
        task = _locked(task)
        if task.state != Task.State.ASSIGNED:
            raise Conflict(f"a task in state {task.state!r} cannot be released")
        previous = task.assignee_id
        task.state, task.assignee, task.claimed_at = Task.State.UNASSIGNED, None, None
        task.save(update_fields=["state", "assignee", "claimed_at", "updated"])
        audit_record(
            project=task.round.project,
            task=task,
            actor=actor,
            action="task.released",
            data={"previous": previous, "reason": "manager"},
        )
    return task


def tasks_release_stale(*, older_than: timedelta, project: Project | None = None) -> int:
    """Return to the pool the tasks claimed more than ``older_than`` ago with no mask saved since.

    Only pool projects: in ``assigned`` projects a manager decides who works on what.
    """
    now = timezone.now()
    saved_since = MaskVersion.objects.filter(
        lesion__task_id=OuterRef("pk"), created__gte=OuterRef("claimed_at")
    )
    stale = Task.objects.filter(
        state=Task.State.ASSIGNED,
        claimed_at__lt=now - older_than,
        round__project__assignment=Assignment.POOL,
    ).exclude(Exists(saved_since))
    if project is not None:
        stale = stale.filter(round__project=project)
    with transaction.atomic():
        rows = list(
            stale.select_for_update(of=("self",)).values_list(
                "pk", "round__project_id", "assignee_id", "claimed_at"
            )
        )
        Task.objects.filter(pk__in=[row[0] for row in rows]).update(
            state=Task.State.UNASSIGNED, assignee=None, claimed_at=None, updated=now
        )
        AuditEvent.objects.bulk_create(
            AuditEvent(
                project_id=project_id,
                task_id=task_id,
                action="task.released",
                data={"previous": assignee_id, "reason": "stale", "claimed_at": str(claimed)},
            )
            for task_id, project_id, assignee_id, claimed in rows
        )
    return len(rows)


def task_submit(*, task: Task, user: User) -> Task:
    with transaction.atomic():
        task = _locked(task)
        if task.assignee_id != user.pk:
            raise Forbidden("only the task's annotator can submit it")
        if not task.editable:
            raise Conflict(f"a task in state {task.state!r} cannot be submitted")
        unmasked = [lesion.pk for lesion in task.lesions.all() if not lesion.mask_versions.exists()]
        if unmasked:
            raise Conflict(f"lesions {unmasked} have no mask yet: segment or delete them first")
        task.state = Task.State.SUBMITTED
        task.submitted_at = timezone.now()
        task.save(update_fields=["state", "submitted_at", "updated"])
        audit_record(project=task.round.project, task=task, actor=user, action="task.submitted")
    return task


def task_review(*, task: Task, reviewer: User, decision: str, comment: str = "") -> Review:
    """Accept a submitted task (it is then locked) or send it back to its annotator."""
    if decision not in Review.Decision.values:
        raise InvalidInput(f"unknown decision {decision!r}", fields={"decision": ["accept/reject"]})
    if decision == Review.Decision.REJECT and not comment.strip():
        raise InvalidInput(
            "a rejection needs a comment for the annotator",
            fields={"comment": ["say what to change"]},
        )
    with transaction.atomic():
        task = _locked(task)
        project = task.round.project
        if project.reviewer_must_differ and task.assignee_id == reviewer.pk:
            raise Forbidden(
                "you annotated this task: in this project its reviewer must be someone else"
            )
        if task.state != Task.State.SUBMITTED:
            raise Conflict(f"a task in state {task.state!r} cannot be reviewed")
        review = Review.objects.create(
            task=task, reviewer=reviewer, decision=decision, comment=comment.strip()
        )
        task.reviewer = reviewer
        task.state = (
            Task.State.ACCEPTED if decision == Review.Decision.ACCEPT else Task.State.REJECTED
        )
        task.save(update_fields=["reviewer", "state", "updated"])
        audit_record(
            project=project,
            task=task,
            actor=reviewer,
            action="review.created",
            data={"review": review.pk, "decision": decision},
        )
        audit_record(
            project=project,
            task=task,
            actor=reviewer,
            action=f"task.{task.state}",
            data={"review": review.pk, "comment": review.comment},
        )
    return review


def task_reopen(*, task: Task, actor: User, reason: str) -> Task:
    """A manager unlocks an accepted task: it goes back to its annotator for edits."""
    if not reason.strip():
        raise InvalidInput(
            "reopening an accepted task needs a reason", fields={"reason": ["say why"]}
        )
    with transaction.atomic():
        task = _locked(task)
        if task.state != Task.State.ACCEPTED:
            raise Conflict(f"only accepted tasks can be reopened; this one is {task.state!r}")
        task.state = Task.State.ASSIGNED if task.assignee_id else Task.State.UNASSIGNED
        task.claimed_at = timezone.now() if task.assignee_id else None  # not stale right away
        task.save(update_fields=["state", "claimed_at", "updated"])
        audit_record(
            project=task.round.project,
            task=task,
            actor=actor,
            action="task.reopened",
            data={"reason": reason.strip(), "assignee": task.assignee_id},
        )
    return task
