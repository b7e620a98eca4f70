from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.masks import ENCODINGS
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
        fields = ["id", "task", "lesion_class", "key_slice", "box", "latest_mask", "created"]

    @extend_schema_field(MaskVersionSerializer(allow_null=True))
    def get_latest_mask(self, lesion: Lesion) -> dict[str, Any] | None:
        versions = list(lesion.mask_versions.all())  # prefetched in id order
        return MaskVersionSerializer(versions[-1]).data if versions else None


class LesionWriteSerializer(serializers.Serializer):
    lesion_class = serializers.CharField(max_length=100)
    key_slice = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    box = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=4,
        max_length=4,
        required=False,
        allow_null=True,
    )


class MaskSaveSerializer(serializers.Serializer):
    # "parent" shadows Field.parent in the stubs only; DRF keeps declared fields apart.
    parent = serializers.IntegerField(  # type: ignore[assignment]
        allow_null=True, help_text="the version the edit started from; null for a first mask"
    )
    encoding = serializers.ChoiceField(choices=ENCODINGS, default="raw-gzip")
    mask = serializers.FileField(
        help_text="raw-gzip: gzip of z*y*x uint8 voxels in C order; image: NIfTI/NRRD/MHA"
    )


class IntervalSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()
    lesion = serializers.IntegerField(required=False, allow_null=True)


class InteractionSerializer(serializers.Serializer):
    tool = serializers.ChoiceField(choices=Interaction.Tool.choices)
    at = serializers.DateTimeField()
    lesion = serializers.IntegerField(required=False, allow_null=True)
    slice_index = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class EffortSerializer(serializers.Serializer):
    intervals = IntervalSerializer(many=True, required=False, default=list)
    interactions = InteractionSerializer(many=True, required=False, default=list)
