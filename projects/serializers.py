from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.models import Lesion, Series
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
from projects.services import current_round


class LesionClassSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    color = serializers.CharField(max_length=32, required=False)


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


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    deidentify = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    lesion_classes = LesionClassSerializer(many=True, required=False)
    window_presets = WindowPresetSerializer(many=True, required=False)
    assignment = serializers.ChoiceField(choices=Assignment.choices, required=False)
    ordering = serializers.ChoiceField(choices=Ordering.choices, required=False)
    annotators_per_task = serializers.IntegerField(min_value=1, max_value=20, required=False)
    reviewer_must_differ = serializers.BooleanField(required=False)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    modality = serializers.ChoiceField(choices=Modality.choices)
    lesion_classes = LesionClassSerializer(many=True)
    window_presets = WindowPresetSerializer(many=True, required=False)
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
    username = serializers.CharField()
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
    comment = serializers.CharField(required=False, allow_blank=True, default="")


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
    user = serializers.CharField(help_text="the annotator's username")

    def validate_user(self, value: str) -> Any:
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(f"no active user {value!r}")
        return user


class TaskReopenSerializer(serializers.Serializer):
    reason = serializers.CharField()


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "task", "actor", "data", "created"]


class ExportLesionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lesion
        fields = ["id", "lesion_class", "key_slice", "box"]
