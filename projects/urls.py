"""Projects, members, rounds, tasks, reviews, dashboards and exports (under ``/api/``)."""

from django.urls import path

from projects import dashboard_views, export_views, views
from projects.intake import views as intake_views

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("projects/", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:slug>/", views.ProjectDetailView.as_view(), name="project"),
    path("projects/<slug:slug>/members/", views.MemberListView.as_view(), name="members"),
    path(
        "projects/<slug:slug>/members/<int:pk>/",
        views.MemberDetailView.as_view(),
        name="member",
    ),
    path("projects/<slug:slug>/volumes/", views.VolumeUploadView.as_view(), name="upload"),
    path("projects/<slug:slug>/rounds/", views.RoundListView.as_view(), name="rounds"),
    # the manager's dashboard and the per-lesion effort table
    path(
        "projects/<slug:slug>/dashboard/",
        dashboard_views.DashboardView.as_view(),
        name="dashboard",
    ),
    path(
        "projects/<slug:slug>/effort.csv",
        dashboard_views.EffortCsvView.as_view(),
        name="effort-csv",
    ),
    path(
        "projects/<slug:slug>/pseudonyms/",
        views.PseudonymListView.as_view(),
        name="pseudonyms",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/export/",
        views.RoundExportView.as_view(),
        name="round-export",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/export/files/",
        export_views.RoundExportFilesView.as_view(),
        name="round-export-files",
    ),
    path("projects/<slug:slug>/tasks/", views.TaskListView.as_view(), name="tasks"),
    path("projects/<slug:slug>/tasks/next/", views.TaskNextView.as_view(), name="next"),
    path("tasks/<int:pk>/", views.TaskDetailView.as_view(), name="task"),
    path("tasks/<int:pk>/submit/", views.TaskSubmitView.as_view(), name="task-submit"),
    path("tasks/<int:pk>/review/", views.TaskReviewView.as_view(), name="task-review"),
    # queue management and the audit trail
    path("tasks/<int:pk>/assign/", views.TaskAssignView.as_view(), name="task-assign"),
    path("tasks/<int:pk>/release/", views.TaskReleaseView.as_view(), name="task-release"),
    path("tasks/<int:pk>/reopen/", views.TaskReopenView.as_view(), name="task-reopen"),
    path("tasks/<int:pk>/audit/", views.TaskAuditView.as_view(), name="task-audit"),
    path("projects/<slug:slug>/audit/", views.ProjectAuditView.as_view(), name="audit"),
    path("projects/<slug:slug>/imports/", intake_views.StudyImportView.as_view(), name="imports"),
    path(
        "projects/<slug:slug>/pacs/studies/",
        intake_views.PacsStudyListView.as_view(),
        name="pacs-studies",
    ),
    path(
        "projects/<slug:slug>/pacs/imports/",
        intake_views.PacsImportView.as_view(),
        name="pacs-imports",
    ),
]
