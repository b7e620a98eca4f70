from typing import Any

from django.contrib import admin

from projects.models import AuditEvent, Membership, Project, Review, Round, Task


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "modality", "assignment", "ordering", "created"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role"]
    list_filter = ["role", "project"]


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "state", "model_version", "opened_at", "closed_at"]
    list_filter = ["project", "state"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "round", "series", "state", "assignee", "reviewer", "updated"]
    list_filter = ["state", "round__project"]
    raw_id_fields = ["series", "assignee", "reviewer"]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["task", "decision", "reviewer", "created"]
    list_filter = ["decision"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created", "project", "action", "task", "actor"]
    list_filter = ["action", "project"]
    raw_id_fields = ["task", "actor"]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # the trail is append-only
