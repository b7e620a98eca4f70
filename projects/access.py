"""Who may see and do what: every object is scoped by project membership.

Objects a user may not see do not exist for them (404); a visible object whose action needs
another role is refused with 403.
"""

from django.contrib.auth.models import User
from django.db.models import F, OuterRef, QuerySet, Subquery, Value

from annotator.core.errors import Forbidden
from projects.models import Membership, Project, Round


def visible_projects(user: User) -> QuerySet[Project]:
    """The user's projects, each annotated with ``my_role`` and ``current_round_number``."""
    open_rounds = Round.objects.filter(project=OuterRef("pk"), state=Round.State.OPEN)
    return Project.objects.filter(memberships__user_id=user.id).annotate(
        my_role=F("memberships__role"),
        my_role_user=Value(user.id),
        current_round_number=Subquery(open_rounds.order_by("-number").values("number")[:1]),
    )


def role_of(user: User, project: Project) -> str | None:
    if getattr(project, "my_role_user", None) == user.id:  # annotated by visible_projects
        return str(project.my_role)  # type: ignore[attr-defined]
    cache: dict[int, str | None] = user.__dict__.setdefault("_project_roles", {})
    if project.pk not in cache:
        cache[project.pk] = (
            Membership.objects.filter(user_id=user.id, project=project)
            .values_list("role", flat=True)
            .first()
        )
    return cache[project.pk]


def require_role(user: User, project: Project, *roles: str) -> str:
    role = role_of(user, project)
    if role not in roles:
        needed = " or ".join(roles)
        raise Forbidden(f"this action needs the {needed} role in project {project.slug!r}")
    assert role is not None
    return role
