import copy
from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.annotation.serializers import MAX_ID
from annotator.models import Lesion, Series, Study
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

# Round numbers are PositiveIntegerFields (ids: annotator.annotation.serializers.MAX_ID). Bounding
# them
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
            "deidentify_modified_dates",
            "deidentify_clean_descriptors",
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
    deidentify_modified_dates = serializers.BooleanField(required=False)
    deidentify_clean_descriptors = serializers.BooleanField(required=False)
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
    deidentify_modified_dates = serializers.BooleanField(required=False, default=True)
    deidentify_clean_descriptors = serializers.BooleanField(required=False, default=False)
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
    # An object in the schema (a JSONField is "any"); DRF's metaclass takes declared fields off the
    # class, so the serializer's own ``.data`` is untouched.
    data = serializers.DictField(read_only=True)  # type: ignore[assignment]

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


class _WithKeyword(serializers.Serializer):
    """A serializer whose body has keys that cannot be class attributes (``keyword_fields``):
    a Python keyword (``class``), or a name a serializer has already (``label``)."""

    keyword_fields: dict[str, serializers.Field] = {}

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name, field in self.keyword_fields.items():
            fields[name] = copy.deepcopy(field)
        return fields


class ManifestLesionEffortSerializer(serializers.Serializer):
    active_s = serializers.FloatField()
    interactions = serializers.DictField(child=serializers.IntegerField(), help_text="by tool")
    model_version = serializers.CharField(allow_blank=True)
    model_dice = serializers.FloatField(allow_null=True)
    model_hd95_mm = serializers.FloatField(allow_null=True)
    edited_fraction = serializers.FloatField(allow_null=True)
    accepted_without_edits = serializers.BooleanField(allow_null=True)
    slices = serializers.IntegerField()
    slices_fixed = serializers.IntegerField()


class ManifestLesionSerializer(_WithKeyword):
    keyword_fields = {
        "class": serializers.CharField(),
        "label": serializers.IntegerField(help_text="its value in the case's instance label map"),
    }

    lesion = serializers.IntegerField()
    key_slice = serializers.IntegerField(allow_null=True)
    box = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    final_mask_version = serializers.IntegerField(allow_null=True)
    final_source = serializers.CharField(allow_null=True)
    final_saved_at = serializers.DateTimeField(allow_null=True)
    voxels = serializers.IntegerField()
    model_mask_version = serializers.IntegerField(allow_null=True)
    versions = serializers.IntegerField()
    effort = ManifestLesionEffortSerializer(allow_null=True)


class ManifestTimesSerializer(serializers.Serializer):
    created = serializers.DateTimeField(allow_null=True)
    claimed = serializers.DateTimeField(allow_null=True)
    submitted = serializers.DateTimeField(allow_null=True)
    accepted = serializers.DateTimeField(allow_null=True)


class ManifestEffortSerializer(serializers.Serializer):
    active_s = serializers.FloatField()
    interactions = serializers.DictField(child=serializers.IntegerField(), help_text="by tool")


class ManifestCaseSerializer(serializers.Serializer):
    case = serializers.CharField()
    task = serializers.IntegerField()
    split = serializers.ChoiceField(choices=["train", "validation"])
    series_instance_uid = serializers.CharField()
    study_instance_uid = serializers.CharField()
    modality = serializers.CharField()
    from_dicom = serializers.BooleanField()
    volume = serializers.IntegerField()
    size = serializers.ListField(child=serializers.IntegerField())
    spacing = serializers.ListField(child=serializers.FloatField())
    annotator = serializers.CharField(allow_null=True)
    reviewer = serializers.CharField(allow_null=True)
    accepted_at = serializers.DateTimeField(allow_null=True)
    times = ManifestTimesSerializer()
    effort = ManifestEffortSerializer(allow_null=True)
    lesions = ManifestLesionSerializer(many=True)


class ManifestModelSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    backend = serializers.CharField()


class ManifestSplitSerializer(serializers.Serializer):
    rule = serializers.CharField()
    train = serializers.IntegerField()
    validation = serializers.IntegerField()


class RoundManifestSerializer(serializers.Serializer):
    """A round's export manifest (``projects.exports.round_manifest``)."""

    project = serializers.SlugField()
    round = serializers.IntegerField()
    model_version = ManifestModelSerializer(allow_null=True)
    split = ManifestSplitSerializer()
    cases = ManifestCaseSerializer(many=True)


class ImportedLesionSerializer(_WithKeyword):
    """A lesion a label import made or found: its id, name and class."""

    keyword_fields = {"class": serializers.CharField()}

    id = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)


class LabelsImportedSerializer(serializers.Serializer):
    """What a label import did (``projects.intake.label_import.LabelsImported.to_dict``)."""

    series = serializers.IntegerField()
    matched_by = serializers.CharField(allow_blank=True)
    created = ImportedLesionSerializer(many=True)
    unchanged = ImportedLesionSerializer(many=True)
    unmatched = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField(allow_blank=True)


class VolumeUploadedSerializer(serializers.Serializer):
    """The answer to a volume upload: what was created (not the task itself)."""

    series = serializers.IntegerField()
    volume = serializers.IntegerField()
    task = serializers.IntegerField(allow_null=True, help_text="null when no task was queued")
    size = serializers.ListField(
        child=serializers.IntegerField(), min_length=3, max_length=3, help_text="x, y, z voxels"
    )
    spacing = serializers.ListField(
        child=serializers.FloatField(), min_length=3, max_length=3, help_text="x, y, z in mm"
    )
    lesions = serializers.ListField(
        child=serializers.IntegerField(), help_text="the lesions the label map made"
    )
    labels = LabelsImportedSerializer(allow_null=True, help_text="null without a label map")


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
