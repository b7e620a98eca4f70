"""Projects, who works on them, rounds of annotation, tasks and their reviews."""

import math
import re

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models


class Modality(models.TextChoices):
    CT = "CT", "CT"
    MR = "MR", "MRI"
    US = "US", "Ultrasound"
    PT = "PT", "PET"
    NM = "NM", "SPECT / nuclear medicine"
    OT = "OT", "Other"


class Assignment(models.TextChoices):
    POOL = "pool", "Open pool: annotators claim the next task"
    ASSIGNED = "assigned", "Assigned: a manager gives each task to an annotator"


class Ordering(models.TextChoices):
    PRIORITY = "priority", "Highest priority first, then oldest"
    LOW_CONFIDENCE = "low_confidence", "Lowest model confidence first (active learning)"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    modality = models.CharField(max_length=8, choices=Modality.choices)
    # [{"name": "tumour", "color": "#e6194b"}, ...]
    lesion_classes = models.JSONField(default=list)
    # [{"name": "soft tissue", "center": 40, "width": 400}, ...]
    window_presets = models.JSONField(default=list)
    # De-identify DICOM on ingest (PS3.15 Basic Profile, see annotator.imaging.dicom.deid), with its
    # options "Retain Longitudinal Temporal Information with Modified Dates" (dates shifted per
    # patient) and "Clean Descriptors" (descriptions kept as attributes, emptied).
    deidentify = models.BooleanField(default=False)
    deidentify_modified_dates = models.BooleanField(default=True)
    deidentify_clean_descriptors = models.BooleanField(default=False)
    # Queue rules: who gets which task, and in which order.
    assignment = models.CharField(
        max_length=12, choices=Assignment.choices, default=Assignment.POOL
    )
    ordering = models.CharField(max_length=16, choices=Ordering.choices, default=Ordering.PRIORITY)
    # N > 1: an agreement study; each series gets N independent tasks, one per annotator.
    annotators_per_task = models.PositiveSmallIntegerField(default=1)
    reviewer_must_differ = models.BooleanField(default=True)
    active_model_version = models.ForeignKey(
        "inference.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="active_in_projects",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def lesion_class_names(self) -> list[str]:
        return [c["name"] for c in self.lesion_classes]

    def lesion_class_named(self, name: str) -> str | None:
        """The project's class an imported label called ``name`` belongs to, or None.

        Names match case-insensitively, with runs of spaces, underscores and hyphens alike:
        "Spinal_Cord" and "spinal-cord" are the class "spinal cord"; "GTV_1" is not "GTV".
        """
        wanted = _class_key(name)
        return next((c for c in self.lesion_class_names if _class_key(c) == wanted), None)

    def window_preset(self) -> tuple[float, float] | None:
        """(center, width) of the project's first usable window preset, or None.

        It maps CT intensities for the models (segmentation, encoding, training, the MedSAM2
        export) and is the default window of the DICOM generated for an upload. Presets are
        checked when saved (``projects.services``); one that is not (an older row, the admin)
        and lacks a finite center or a positive finite width is skipped, not an error."""
        for preset in self.window_presets or []:
            try:
                center, width = float(preset["center"]), float(preset["width"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(center) and math.isfinite(width) and width > 0:
                return center, width
        return None


def _class_key(name: str) -> str:
    return " ".join(re.split(r"[\s_-]+", name.casefold())).strip()


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.project}"


class Round(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    # The model that pre-annotates this round's tasks (None: the backend's untrained default).
    model_version = models.ForeignKey(
        "inference.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rounds_used_in",
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.project} round {self.number}"


class TaskQuerySet(models.QuerySet["Task"]):
    def visible_to(self, user: User) -> "TaskQuerySet":
        """Managers and reviewers see every task of their projects; annotators see their own.

        Here, beside the schema, so that every layer scopes tasks the same way (``projects.access``
        scopes projects and roles)."""
        memberships = Membership.objects.filter(user_id=user.id)
        overseen = memberships.filter(role__in=[Role.MANAGER, Role.REVIEWER]).values("project_id")
        annotated = memberships.filter(role=Role.ANNOTATOR).values("project_id")
        return self.filter(
            models.Q(round__project_id__in=overseen)
            | models.Q(round__project_id__in=annotated, assignee_id=user.id)
        )


class Task(models.Model):
    """One series to annotate in one round (``copy`` k of N in an agreement study).

    States: unassigned -> assigned -> submitted -> accepted, or -> rejected, which sends the task
    back to the same annotator (assignee kept) until it is submitted again.
    """

    class State(models.TextChoices):
        UNASSIGNED = "unassigned", "Unassigned"
        ASSIGNED = "assigned", "Assigned"
        SUBMITTED = "submitted", "Submitted"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="tasks")
    series = models.ForeignKey("annotator.Series", on_delete=models.PROTECT, related_name="tasks")
    copy = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.UNASSIGNED, db_index=True
    )
    priority = models.IntegerField(default=0)
    # Set when a pre-annotation finishes; the low_confidence ordering serves the lowest first.
    model_confidence = models.FloatField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="assigned_tasks",
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reviewed_tasks",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "series", "copy"], name="one_task_per_series_copy_and_round"
            ),
            # No annotator gets two copies of one series.
            models.UniqueConstraint(
                fields=["round", "series", "assignee"],
                condition=models.Q(assignee__isnull=False),
                name="one_copy_per_annotator",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "-priority", "id"], name="task_queue_idx"),
            # The claim queries: open tasks of a round in each ordering, and own tasks.
            models.Index(
                fields=["round", "-priority", "id"],
                condition=models.Q(state="unassigned"),
                name="task_pool_priority_idx",
            ),
            # Ascending puts NULLs last on PostgreSQL, as the low_confidence ordering does.
            models.Index(
                fields=["round", "model_confidence", "-priority", "id"],
                condition=models.Q(state="unassigned"),
                name="task_pool_confidence_idx",
            ),
            models.Index(fields=["assignee", "state"], name="task_assignee_state_idx"),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.state})"

    @property
    def editable(self) -> bool:
        return self.state in (self.State.ASSIGNED, self.State.REJECTED)


class Review(models.Model):
    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accept"
        REJECT = "reject", "Reject"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} of {self.task_id} by {self.reviewer}"


class AuditEvent(models.Model):
    """One thing that happened in a project, written in the same transaction as the change."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audit_events")
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    action = models.CharField(max_length=40)  # "task.claimed", "mask.saved", ...
    data = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "-id"], name="audit_project_idx"),
            models.Index(fields=["project", "action", "-id"], name="audit_project_action_idx"),
            models.Index(fields=["task", "-id"], name="audit_task_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} in {self.project_id} by {self.actor_id}"
