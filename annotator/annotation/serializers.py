from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.annotation.masks import ENCODINGS
from annotator.models import Interaction, Lesion, MaskVersion


class MaskVersionSerializer(serializers.ModelSerializer):
    author = serializers.SerializerMethodField()

    class Meta:
        model = MaskVersion
        fields = [
            "id",
            "lesion",
            "parent",
            "source",
            "author",
            "author_user",
            "author_model",
            "author_backend",
            "voxel_count",
            "created",
        ]

    @extend_schema_field(serializers.CharField())
    def get_author(self, version: MaskVersion) -> str:
        if version.author_user is not None:
            return version.author_user.get_username()
        if version.author_model is not None:
            return version.author_model.name
        return version.author_backend or version.source


class LesionSerializer(serializers.ModelSerializer):
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0), min_length=4, max_length=4, allow_null=True
    )
    latest_mask = serializers.SerializerMethodField()

    class Meta:
        model = Lesion
        fields = [
            "id",
            "task",
            "lesion_class",
            "name",
            "key_slice",
            "box",
            "latest_mask",
            "created",
        ]
        read_only_fields = ["name"]  # an imported label's own name

    @extend_schema_field(MaskVersionSerializer(allow_null=True))
    def get_latest_mask(self, lesion: Lesion) -> dict[str, Any] | None:
        versions = list(lesion.mask_versions.all())  # prefetched in id order
        return MaskVersionSerializer(versions[-1]).data if versions else None


# Ids are BigAutoFields, voxel indices fit PositiveIntegerFields: bounded here, a 30-digit number
# is a 400, never an overflow in the database driver.
MAX_ID = 2**63 - 1
MAX_INDEX = 2**31 - 1


class LesionWriteSerializer(serializers.Serializer):
    lesion_class = serializers.CharField(max_length=100)
    key_slice = serializers.IntegerField(
        min_value=0, max_value=MAX_INDEX, required=False, allow_null=True
    )
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=MAX_INDEX),
        min_length=4,
        max_length=4,
        required=False,
        allow_null=True,
    )


class MaskSaveSerializer(serializers.Serializer):
    # "parent" shadows Field.parent in the stubs only; DRF keeps declared fields apart.
    parent = serializers.IntegerField(  # type: ignore[assignment]
        allow_null=True,
        min_value=1,
        max_value=MAX_ID,
        help_text="the version the edit started from; null for a first mask",
    )
    encoding = serializers.ChoiceField(choices=ENCODINGS, default="raw-gzip")
    mask = serializers.FileField(
        help_text="raw-gzip: gzip of z*y*x uint8 voxels in C order; image: NIfTI/NRRD/MHA"
    )


class MaskDataQuerySerializer(serializers.Serializer):
    encoding = serializers.ChoiceField(choices=["raw-gzip", "nifti"], default="raw-gzip")


# What one effort request may hold. The viewer sends a batch every 30 s with pieces of at most
# 30 s each, and after an outage its backlog in chunks of these sizes (workspace/effort.ts).
MAX_INTERVALS = 500
MAX_INTERACTIONS = 2000
MAX_INTERVAL = timedelta(hours=1)
# Times are the viewer's clock: a backlog may be days old, a clock a little fast.
MAX_AGE = timedelta(days=30)
MAX_AHEAD = timedelta(hours=1)


def check_recent(value: datetime) -> None:
    """A time within [now - MAX_AGE, now + MAX_AHEAD]."""
    now = timezone.now()
    if value < now - MAX_AGE:
        raise serializers.ValidationError(f"more than {MAX_AGE.days} days ago")
    if value > now + MAX_AHEAD:
        raise serializers.ValidationError("in the future")


class IntervalSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField(validators=[check_recent])
    ended_at = serializers.DateTimeField(validators=[check_recent])
    lesion = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_ID
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        length = attrs["ended_at"] - attrs["started_at"]
        if length < timedelta(0):
            raise serializers.ValidationError({"ended_at": ["before started_at"]})
        if length > MAX_INTERVAL:
            hours = MAX_INTERVAL.total_seconds() / 3600
            raise serializers.ValidationError(
                {"ended_at": [f"more than {hours:g} h after started_at"]}
            )
        return attrs


class InteractionSerializer(serializers.Serializer):
    tool = serializers.ChoiceField(choices=Interaction.Tool.choices)
    at = serializers.DateTimeField(validators=[check_recent])
    lesion = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_ID
    )
    slice_index = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_INDEX
    )


class EffortSerializer(serializers.Serializer):
    """Active intervals (each at most ``MAX_INTERVAL`` long) and tool interactions, all within
    ``MAX_AGE`` before and ``MAX_AHEAD`` after the server's clock; at most ``MAX_INTERVALS`` and
    ``MAX_INTERACTIONS`` per request."""

    intervals: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=IntervalSerializer(), required=False, default=list, max_length=MAX_INTERVALS
    )
    interactions: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=InteractionSerializer(), required=False, default=list, max_length=MAX_INTERACTIONS
    )
