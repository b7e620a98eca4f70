"""Every write to projects, memberships and rounds goes through these functions (tasks and
reviews: ``projects.task_services``)."""

import math
import re
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotator.annotation.audit import audit_record
from annotator.core.errors import Conflict, Forbidden, InvalidInput
from projects.models import (
    Assignment,
    Membership,
    Modality,
    Ordering,
    Project,
    Role,
    Round,
)

DEFAULT_WINDOWS: dict[str, list[dict[str, Any]]] = {
    Modality.CT: [
        {"name": "Soft tissue", "center": 40, "width": 400},
        {"name": "Lung", "center": -600, "width": 1500},
        {"name": "Bone", "center": 400, "width": 1800},
    ],
}
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]
# A class colour lands in the front end's styles: only hex colours, nothing CSS could read more
# into (\A...\Z: "$" would let a trailing newline through).
COLOR_PATTERN = r"\A#(?:[0-9A-Fa-f]{3}){1,2}\Z"
MAX_LESION_CLASSES = 100
MAX_CLASS_NAME_CHARS = 100
MAX_WINDOW_PRESETS = 20
# Free text kept in TextFields (project descriptions, review comments): the same cap on every
# database, far above any real use.
MAX_TEXT_CHARS = 10_000
MAX_REASON_CHARS = 2_000


def _check_classes(lesion_classes: list[Any]) -> list[dict[str, str]]:
    if not lesion_classes:
        raise InvalidInput(
            "a project needs at least one lesion class",
            fields={"lesion_classes": ["give at least one class"]},
        )
    if len(lesion_classes) > MAX_LESION_CLASSES:
        raise InvalidInput(
            f"a project has at most {MAX_LESION_CLASSES} lesion classes",
            fields={"lesion_classes": [f"at most {MAX_LESION_CLASSES}"]},
        )
    out = []
    for i, item in enumerate(lesion_classes):
        entry = {"name": item} if isinstance(item, str) else dict(item)
        name = str(entry.get("name", "")).strip()
        if not name:
            raise InvalidInput(
                f"lesion class {i} has no name", fields={"lesion_classes": ["names are required"]}
            )
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise InvalidInput(
                f"lesion class {i}'s name is longer than {MAX_CLASS_NAME_CHARS} characters",
                fields={"lesion_classes": [f"names of at most {MAX_CLASS_NAME_CHARS} characters"]},
            )
        color = str(entry.get("color") or PALETTE[i % len(PALETTE)])
        if not re.match(COLOR_PATTERN, color):
            raise InvalidInput(
                f"lesion class {name!r} has the colour {color!r}; expected #rgb or #rrggbb",
                fields={"lesion_classes": ["colours are #rgb or #rrggbb"]},
            )
        out.append({"name": name, "color": color})
    names = [c["name"] for c in out]
    if len(set(names)) != len(names):
        raise InvalidInput(
            "lesion class names must be unique", fields={"lesion_classes": ["duplicate name"]}
        )
    return out


def _check_windows(window_presets: list[Any]) -> list[dict[str, Any]]:
    if len(window_presets) > MAX_WINDOW_PRESETS:
        raise InvalidInput(
            f"a project has at most {MAX_WINDOW_PRESETS} window presets",
            fields={"window_presets": [f"at most {MAX_WINDOW_PRESETS}"]},
        )
    out = []
    for i, item in enumerate(window_presets):
        try:
            name, center, width = str(item["name"]), float(item["center"]), float(item["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"window preset {i} needs a name, a center and a width",
                fields={"window_presets": ["each preset needs name, center and width"]},
            ) from exc
        if not (math.isfinite(center) and math.isfinite(width)):
            raise InvalidInput(
                f"window preset {name!r} has a center or width that is not a finite number",
                fields={"window_presets": ["center and width are finite numbers"]},
            )
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
    deidentify_modified_dates: bool = True,
    deidentify_clean_descriptors: bool = False,
    **rules: Any,
) -> Project:
    """Create a project with its creator as manager and round 0 open."""
    if not user.has_perm("projects.add_project"):
        raise Forbidden("you are not allowed to create projects")
    if window_presets is None:
        window_presets = DEFAULT_WINDOWS.get(modality, [])
    classes = _check_classes(lesion_classes)
    windows = _check_windows(window_presets)
    rules = _check_rules(rules)
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
                deidentify_modified_dates=deidentify_modified_dates,
                deidentify_clean_descriptors=deidentify_clean_descriptors,
                created_by=user,
                **rules,
            )
            Membership.objects.create(user=user, project=project, role=Role.MANAGER)
            Round.objects.create(project=project, number=0)
    except IntegrityError as exc:
        raise InvalidInput(
            f"a project with the slug {slug!r} exists", fields={"slug": ["already taken"]}
        ) from exc
    return project


RULES = ("assignment", "ordering", "annotators_per_task", "reviewer_must_differ")


def _check_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Queue and review rules: ``assignment``, ``ordering``, ``annotators_per_task``, ..."""
    unknown = set(rules) - set(RULES)
    if unknown:
        raise InvalidInput(f"unknown project settings {sorted(unknown)}")
    if "assignment" in rules and rules["assignment"] not in Assignment.values:
        raise InvalidInput(
            f"unknown assignment {rules['assignment']!r}",
            fields={"assignment": [f"one of {Assignment.values}"]},
        )
    if "ordering" in rules and rules["ordering"] not in Ordering.values:
        raise InvalidInput(
            f"unknown ordering {rules['ordering']!r}",
            fields={"ordering": [f"one of {Ordering.values}"]},
        )
    if "annotators_per_task" in rules and not 1 <= int(rules["annotators_per_task"]) <= 20:
        raise InvalidInput(
            "annotators_per_task must be between 1 and 20",
            fields={"annotators_per_task": ["between 1 and 20"]},
        )
    return rules


def project_update(*, project: Project, **changes: Any) -> Project:
    _check_rules({k: v for k, v in changes.items() if k in RULES})
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


def round_open(*, project: Project, actor: User | None = None) -> Round:
    """Close the open round and open the next one, pre-annotated by the project's active model
    (one an operator chose) or else its newest model trained here that no validation gate
    refused (``metrics.promotion.promoted`` false: it validated worse than the model it would
    have replaced); None: the untrained default.
    """
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        previous = project.rounds.order_by("-number").first()
        project.rounds.filter(state=Round.State.OPEN).update(
            state=Round.State.CLOSED, closed_at=timezone.now()
        )
        model_version = project.active_model_version or (
            project.model_versions.filter(training_job__isnull=False)
            .filter(
                Q(metrics__promotion__promoted__isnull=True) | Q(metrics__promotion__promoted=True)
            )
            .order_by("-id")
            .first()
        )
        round_ = Round.objects.create(
            project=project,
            number=previous.number + 1 if previous else 0,
            model_version=model_version,
        )
        audit_record(
            project=project, actor=actor, action="round.opened", data={"round": round_.number}
        )
        return round_
