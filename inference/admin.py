from django.contrib import admin

from inference.models import InferenceJob, ModelVersion, TrainingJob


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "backend", "created"]
    list_filter = ["backend"]


@admin.register(InferenceJob)
class InferenceJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "lesion", "state", "progress_done", "progress_total", "created"]
    list_filter = ["state", "kind"]
    readonly_fields = ["timings", "error"]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "round", "state", "progress_done", "progress_total", "created"]
    list_filter = ["state"]
    readonly_fields = ["error"]
