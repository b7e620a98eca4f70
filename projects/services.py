"""Every write to projects, memberships, rounds, tasks and reviews goes through these functions."""

from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotator.errors import Conflict, Forbidden, InvalidInput
from projects.models import Membership, Modality, Project, Review, Role, Round, Task

DEFAULT_WINDOWS: dict[str, list[dict[str, Any]]] = {
    Modality.CT: [
        {"name": "Soft tissue", "center": 40, "width": 400},
        {"name": "Lung", "center": -600, "width": 1500},
        {"name": "Bone", "center": 400, "width": 1800},
    ],
}
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]


def _check_classes(lesion_classes: list[Any]) -> list[dict[str, str]]:
    if not lesion_classes:
        raise InvalidInput(
            "a project needs at least one lesion class",
            fields={"lesion_classes": ["give at least one class"]},
        )
    out = []
    for i, item in enumerate(lesion_classes):
        entry = {"name": item} if isinstance(item, str) else dict(item)
        name = str(entry.get("name", "")).strip()
        if not name:
            raise InvalidInput(
                f"lesion class {i} has no name", fields={"lesion_classes": ["names are required"]}
            )
        out.append({"name": name, "color": str(entry.get("color") or PALETTE[i % len(PALETTE)])})
    names = [c["name"] for c in out]
    if len(set(names)) != len(names):
        raise InvalidInput(
            "lesion class names must be unique", fields={"lesion_classes": ["duplicate name"]}
        )
    return out


def _check_windows(window_presets: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(window_presets):
        try:
            name, center, width = str(item["name"]), float(item["center"]), float(item["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"window preset {i} needs a name, a center and a width",
                fields={"window_presets": ["each preset needs name, center and width"]},
            ) from exc
        if width <= 0:
            raise InvalidInput(
                f"window preset {name!r} has a width <= 0",
                fields={"window_presets": ["width must be positive"]},
            )
        out.append({"name": name, "center": center, "width": width})
    return out


def project_create(
    *,
    user: User,
    name: str,
    slug: str,
    modality: str,
    lesion_classes: list[Any],
    window_presets: list[Any] | None = None,
    description: str = "",
    deidentify: bool = False,
) -> Project:
    """Create a project with its creator as manager and round 0 open."""
    if not user.has_perm("projects.add_project"):
        raise Forbidden("you are not allowed to create projects")
    if window_presets is None:
        window_presets = DEFAULT_WINDOWS.get(modality, [])
    classes = _check_classes(lesion_classes)
    windows = _check_windows(window_presets)
    try:
        with transaction.atomic():
            project = Project.objects.create(
                name=name,
                slug=slug,
                modality=modality,
                description=description,
                lesion_classes=classes,
                window_presets=windows,
                deidentify=deidentify,
                created_by=user,
            )
            Membership.objects.create(user=user, project=project, role=Role.MANAGER)
            Round.objects.create(project=project, number=0)
    except IntegrityError as exc:
        raise InvalidInput(
            f"a project with the slug {slug!r} exists", fields={"slug": ["already taken"]}
        ) from exc
    return project


def project_update(*, project: Project, **changes: Any) -> Project:
    if "lesion_classes" in changes:
        changes["lesion_classes"] = _check_classes(changes["lesion_classes"])
    if "window_presets" in changes:
        changes["window_presets"] = _check_windows(changes["window_presets"])
    for field, value in changes.items():
        setattr(project, field, value)
    project.save(update_fields=list(changes))
    return project


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"unknown role {role!r}", fields={"role": ["unknown role"]})
    membership, _ = Membership.objects.update_or_create(
        user=user, project=project, defaults={"role": role}
    )
    return membership


def membership_remove(*, membership: Membership) -> None:
    project = membership.project
    if (
        membership.role == Role.MANAGER
        and not project.memberships.filter(role=Role.MANAGER).exclude(pk=membership.pk).exists()
    ):
        raise Conflict("a project keeps at least one manager")
    membership.delete()


def current_round(project: Project) -> Round | None:
    return project.rounds.filter(state=Round.State.OPEN).order_by("-number").first()


def round_open(*, project: Project) -> Round:
    """Close the open round and open the next one, pre-annotated by the project's active model
    (one an operator chose) or else its newest model trained here (None: the untrained default).
    """
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        previous = project.rounds.order_by("-number").first()
        project.rounds.filter(state=Round.State.OPEN).update(
            state=Round.State.CLOSED, closed_at=timezone.now()
        )
        model_version = project.active_model_version or (
            project.model_versions.filter(training_job__isnull=False).order_by("-id").first()
        )
        return Round.objects.create(
            project=project,
            number=previous.number + 1 if previous else 0,
            model_version=model_version,
        )


def task_create(*, series: Any) -> Task | None:
    """Queue a series for annotation in its project's open round (None when no round is open)."""
    round_ = current_round(series.study.project)
    if round_ is None:
        return None
    task, _ = Task.objects.get_or_create(round=round_, series=series)
    return task


def task_claim_next(*, user: User, project: Project) -> Task | None:
    """The annotator's next task: their own rejected or open task first, else a fresh claim.

    A claim is a compare-and-set on the task's state, so no two annotators ever get the same task;
    on PostgreSQL, ``SKIP LOCKED`` lets concurrent claims pass each other instead of queueing.
    """
    own = (
        Task.objects.filter(round__project=project, assignee_id=user.pk)
        .filter(Q(state=Task.State.REJECTED) | Q(state=Task.State.ASSIGNED))
        .order_by("-state", "-priority", "id")  # descending: "rejected" before "assigned"
        .first()
    )
    if own is not None:
        return own
    for _attempt in range(20):
        with transaction.atomic():
            queue = Task.objects.filter(
                round__project=project, round__state=Round.State.OPEN, state=Task.State.UNASSIGNED
            ).order_by("-priority", "id")
            if connection.features.has_select_for_update_skip_locked:
                queue = queue.select_for_update(skip_locked=True, of=("self",))
            candidate = queue.first()
            if candidate is None:
                return None
            now = timezone.now()
            claimed = Task.objects.filter(pk=candidate.pk, state=Task.State.UNASSIGNED).update(
                state=Task.State.ASSIGNED, assignee=user, claimed_at=now, updated=now
            )
            if claimed:
                candidate.refresh_from_db()
                return candidate
    raise Conflict("the queue is too busy right now; try again")


def _locked(task: Task) -> Task:
    return Task.objects.select_for_update().get(pk=task.pk)


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
    return review
