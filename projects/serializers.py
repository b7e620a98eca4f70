from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.models import Lesion, Series, Study
from annotator.serializers import MAX_ID
from projects.access import role_of
from projects.models import (
    Assignment,
    AuditEvent,
    Membership,
    Modality,
    Ordering,
    Project,
    Review,
    Role,
    Round,
    Task,
)
from projects.services import (
    COLOR_PATTERN,
    MAX_CLASS_NAME_CHARS,
    MAX_LESION_CLASSES,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
    MAX_WINDOW_PRESETS,
    current_round,
)

# Round numbers are PositiveIntegerFields (ids: annotator.serializers.MAX_ID). Bounding them
# here turns a 30-digit number into a 400 rather than an integer overflow in the database driver.
MAX_ROUND = 2**31 - 1
# A study's (and its series') description.
DESCRIPTION_CHARS = Study._meta.get_field("description").max_length


class LesionClassSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=MAX_CLASS_NAME_CHARS)
    color = serializers.RegexField(
        COLOR_PATTERN,
        required=False,
        error_messages={"invalid": "a colour as #rgb or #rrggbb"},
        help_text="#rgb or #rrggbb",
    )


class WindowPresetSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    center = serializers.FloatField()
    width = serializers.FloatField(min_value=0.001)


class ProjectSerializer(serializers.ModelSerializer):
    lesion_classes = LesionClassSerializer(many=True)
    window_presets = WindowPresetSerializer(many=True, required=False)
    my_role = serializers.SerializerMethodField()
    current_round = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "modality",
            "lesion_classes",
            "window_presets",
            "deidentify",
            "assignment",
            "ordering",
            "annotators_per_task",
            "reviewer_must_differ",
            "active_model_version",
            "my_role",
            "current_round",
            "created",
        ]
        read_only_fields = ["id", "active_model_version", "created"]

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices, allow_null=True))
    def get_my_role(self, project: Project) -> str | None:
        return role_of(self.context["request"].user, project)

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_current_round(self, project: Project) -> int | None:
        if hasattr(project, "current_round_number"):  # annotated by visible_projects
            return project.current_round_number  # type: ignore[no-any-return]
        round_ = current_round(project)
        return round_.number if round_ else None


def _lesion_classes(**kwargs: Any) -> serializers.ListSerializer[Any]:
    return serializers.ListSerializer(
        child=LesionClassSerializer(), max_length=MAX_LESION_CLASSES, **kwargs
    )


def _window_presets() -> serializers.ListSerializer[Any]:
    return serializers.ListSerializer(
        child=WindowPresetSerializer(), required=False, max_length=MAX_WINDOW_PRESETS
    )


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    deidentify = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=MAX_TEXT_CHARS)
    lesion_classes = _lesion_classes(required=False)
    window_presets = _window_presets()
    assignment = serializers.ChoiceField(choices=Assignment.choices, required=False)
    ordering = serializers.ChoiceField(choices=Ordering.choices, required=False)
    annotators_per_task = serializers.IntegerField(min_value=1, max_value=20, required=False)
    reviewer_must_differ = serializers.BooleanField(required=False)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_TEXT_CHARS
    )
    modality = serializers.ChoiceField(choices=Modality.choices)
    lesion_classes = _lesion_classes()
    window_presets = _window_presets()
    deidentify = serializers.BooleanField(required=False, default=False)
    assignment = serializers.ChoiceField(choices=Assignment.choices, required=False)
    ordering = serializers.ChoiceField(choices=Ordering.choices, required=False)
    annotators_per_task = serializers.IntegerField(min_value=1, max_value=20, required=False)
    reviewer_must_differ = serializers.BooleanField(required=False)


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "username", "role", "created"]
        read_only_fields = ["id", "user", "created"]


class MembershipSetSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)

    def validate_username(self, value: str) -> Any:
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(f"no active user {value!r}")
        return user


class RoundSerializer(serializers.ModelSerializer):
    class Meta:
        model = Round
        fields = ["id", "number", "state", "model_version", "opened_at", "closed_at"]


class SeriesBriefSerializer(serializers.ModelSerializer):
    # the UIDs let the viewer fetch the series through DICOMweb (/dicomweb/studies/.../series/...)
    study_instance_uid = serializers.CharField(source="study.study_instance_uid", read_only=True)

    class Meta:
        model = Series
        fields = ["id", "description", "modality", "series_instance_uid", "study_instance_uid"]


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Review
        fields = ["id", "decision", "comment", "reviewer", "created"]


class ReviewCreateSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_TEXT_CHARS
    )


class TaskSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="round.project.slug", read_only=True)
    round = serializers.IntegerField(source="round.number", read_only=True)
    series = SeriesBriefSerializer(read_only=True)
    volume = serializers.IntegerField(source="series.volume.id", read_only=True)
    assignee = serializers.CharField(source="assignee.username", read_only=True, allow_null=True)
    reviewer = serializers.CharField(source="reviewer.username", read_only=True, allow_null=True)
    lesion_count = serializers.IntegerField(read_only=True)
    last_review = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "project",
            "round",
            "series",
            "volume",
            "state",
            "copy",
            "priority",
            "model_confidence",
            "assignee",
            "reviewer",
            "lesion_count",
            "claimed_at",
            "submitted_at",
            "updated",
            "last_review",
        ]

    @extend_schema_field(ReviewSerializer(allow_null=True))
    def get_last_review(self, task: Task) -> dict[str, Any] | None:
        reviews = list(task.reviews.all())  # prefetched, newest first
        return ReviewSerializer(reviews[0]).data if reviews else None


class TaskAssignSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=150, help_text="the annotator's username")

    def validate_user(self, value: str) -> Any:
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(f"no active user {value!r}")
        return user


class TaskReopenSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON_CHARS)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "task", "actor", "data", "created"]


class ExportLesionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lesion
        fields = ["id", "lesion_class", "key_slice", "box"]


class VolumeUploadSerializer(serializers.Serializer):
    """The text fields of a volume upload (its files are read by the view)."""

    description = serializers.CharField(
        max_length=DESCRIPTION_CHARS,
        required=False,
        allow_blank=True,
        default="",
    )


class TaskListQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=Task.State.choices, required=False)
    mine = serializers.BooleanField(required=False, help_text="only tasks assigned to me")
    round = serializers.IntegerField(min_value=0, max_value=MAX_ROUND, required=False)


class AuditQuerySerializer(serializers.Serializer):
    action = serializers.CharField(
        max_length=AuditEvent._meta.get_field("action").max_length, required=False
    )
    user = serializers.CharField(max_length=150, required=False, help_text="the actor's username")
    task = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
