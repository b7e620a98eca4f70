from rest_framework import serializers

from inference.models import InferenceJob, ModelVersion, TrainingJob
from inference.services import MAX_POINTS
from projects.models import Round


def _points(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ListField(
            child=serializers.IntegerField(min_value=0), min_length=3, max_length=3
        ),
        required=False,
        max_length=MAX_POINTS,
        help_text=help_text,
    )


class SegmentRequestSerializer(serializers.Serializer):
    key_slice = serializers.IntegerField(
        min_value=0, required=False, help_text="required unless mask_slice is given"
    )
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=4,
        max_length=4,
        required=False,
        help_text="[x0, y0, x1, y1], inclusive voxel indices on the key slice; required "
        "unless mask_slice is given (then the box around that slice's mask)",
    )
    positive_points = _points("[[x, y, z], ...] voxels inside the lesion (clicks)")
    negative_points = _points("[[x, y, z], ...] voxels outside the lesion (clicks)")
    mask_slice = serializers.IntegerField(
        min_value=0,
        required=False,
        help_text="propagate from this slice of the lesion's latest saved mask (save the "
        "corrected mask first); the result keeps that slice exactly",
    )
    z_range = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=2,
        max_length=2,
        required=False,
        help_text="[z0, z1], inclusive: the slices the model may change; the others keep the "
        "latest saved mask",
    )


class InferenceJobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = InferenceJob
        fields = [
            "id",
            "kind",
            "lesion",
            "prompt",
            "backend",
            "model_version",
            "queue",
            "state",
            "progress",
            "progress_done",
            "progress_total",
            "error",
            "notice",
            "attempts",
            "worker",
            "heartbeat_at",
            "timings",
            "result",
            "created",
            "started_at",
            "finished_at",
        ]


class ModelVersionSerializer(serializers.ModelSerializer):
    trained_from_rounds: serializers.SlugRelatedField[Round] = serializers.SlugRelatedField(
        slug_field="number", many=True, read_only=True, help_text="round numbers"
    )
    metrics = serializers.DictField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "backend",
            "checkpoint",
            "metrics",
            "trained_from_rounds",
            "created",
        ]


class TrainingJobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    project = serializers.CharField(source="project.slug", read_only=True)
    round = serializers.IntegerField(source="round.number", read_only=True)
    result = ModelVersionSerializer(read_only=True, allow_null=True)

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "project",
            "round",
            "state",
            "progress",
            "progress_done",
            "progress_total",
            "error",
            "notice",
            "attempts",
            "worker",
            "heartbeat_at",
            "result",
            "created",
            "started_at",
            "finished_at",
        ]
