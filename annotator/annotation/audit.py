"""The audit trail: services record what happened, in the same transaction as the change."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from projects.models import AuditEvent, Project, Task

ACTIONS = (
    "round.opened",
    "task.claimed",
    "task.assigned",
    "task.released",
    "task.submitted",
    "task.accepted",
    "task.rejected",
    "task.reopened",
    "review.created",
    "mask.saved",
    "model.promoted",
)


def audit_record(
    *,
    project: Project | int,
    action: str,
    actor: User | AnonymousUser | None = None,
    task: Task | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event; call it inside the transaction that makes the change."""
    project_id = project if isinstance(project, int) else project.pk
    return AuditEvent.objects.create(
        project_id=project_id,
        task=task,
        actor=actor if isinstance(actor, User) else None,
        action=action,
        data=data or {},
    )


def audit_events(project: Project) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(project=project).select_related("actor").order_by("-id")
