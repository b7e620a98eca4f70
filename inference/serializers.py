from rest_framework import serializers

from inference.models import InferenceJob, ModelVersion


class SegmentRequestSerializer(serializers.Serializer):
    key_slice = serializers.IntegerField(min_value=0)
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=4,
        max_length=4,
        help_text="[x0, y0, x1, y1], inclusive voxel indices on the key slice",
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
            "timings",
            "result",
            "created",
            "started_at",
            "finished_at",
        ]


class ModelVersionSerializer(serializers.ModelSerializer):
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
