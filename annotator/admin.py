from django.contrib import admin

from annotator.models import (
    ActiveInterval,
    Instance,
    Interaction,
    Lesion,
    MaskVersion,
    Series,
    Study,
    Volume,
)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["study_instance_uid", "description", "project", "created"]
    list_filter = ["project"]
    search_fields = ["study_instance_uid", "description", "patient_id"]


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ["series_instance_uid", "description", "modality", "study"]
    search_fields = ["series_instance_uid", "description"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["sop_instance_uid", "series", "frame_offset", "number_of_frames"]
    search_fields = ["sop_instance_uid"]
    raw_id_fields = ["series"]


@admin.register(Volume)
class VolumeAdmin(admin.ModelAdmin):
    list_display = ["series", "size", "spacing", "pixel_type"]


@admin.register(Lesion)
class LesionAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "lesion_class", "key_slice", "box"]


@admin.register(MaskVersion)
class MaskVersionAdmin(admin.ModelAdmin):
    """Read-only: mask versions are append-only."""

    list_display = ["id", "lesion", "parent", "source", "author_user", "voxel_count", "created"]
    list_filter = ["source"]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(ActiveInterval)
class ActiveIntervalAdmin(admin.ModelAdmin):
    list_display = ["task", "user", "lesion", "started_at", "ended_at"]


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["task", "user", "tool", "lesion", "at"]
    list_filter = ["tool"]
