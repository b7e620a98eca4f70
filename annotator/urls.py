from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from annotator import ingest_views, token_views
from annotator import views as annotator_views
from annotator.frontend import app_page
from inference import views as inference_views
from projects import dashboard_views, export_views
from projects import views as project_views

# ReDoc's page (per view, on top of settings.CONTENT_SECURITY_POLICY): its styled-components
# inject <style> elements that carry no nonce, and its sidebar shows Redocly's logo from their CDN.
REDOC_POLICY = {
    "style-src": [SELF, UNSAFE_INLINE],
    "img-src": [SELF, "data:", "https://cdn.redoc.ly"],
}

api = [
    path("auth/token/", token_views.TokenLoginView.as_view(), name="api-token"),
    path("auth/logout/", token_views.LogoutView.as_view(), name="api-logout"),
    path("auth/logoutall/", token_views.LogoutAllView.as_view(), name="api-logout-all"),
    path("me/", project_views.MeView.as_view(), name="me"),
    path("projects/", project_views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:slug>/", project_views.ProjectDetailView.as_view(), name="project"),
    path("projects/<slug:slug>/members/", project_views.MemberListView.as_view(), name="members"),
    path(
        "projects/<slug:slug>/members/<int:pk>/",
        project_views.MemberDetailView.as_view(),
        name="member",
    ),
    path("projects/<slug:slug>/volumes/", project_views.VolumeUploadView.as_view(), name="upload"),
    path("projects/<slug:slug>/imports/", ingest_views.StudyImportView.as_view(), name="imports"),
    path(
        "projects/<slug:slug>/pacs/studies/",
        ingest_views.PacsStudyListView.as_view(),
        name="pacs-studies",
    ),
    path(
        "projects/<slug:slug>/pacs/imports/",
        ingest_views.PacsImportView.as_view(),
        name="pacs-imports",
    ),
    path("projects/<slug:slug>/rounds/", project_views.RoundListView.as_view(), name="rounds"),
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
        project_views.PseudonymListView.as_view(),
        name="pseudonyms",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/export/",
        project_views.RoundExportView.as_view(),
        name="round-export",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/export/files/",
        export_views.RoundExportFilesView.as_view(),
        name="round-export-files",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/preannotate/",
        inference_views.RoundPreannotateView.as_view(),
        name="round-preannotate",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/train/",
        inference_views.RoundTrainView.as_view(),
        name="round-train",
    ),
    path(
        "projects/<slug:slug>/model-versions/",
        inference_views.ModelVersionListView.as_view(),
        name="model-versions",
    ),
    path(
        "projects/<slug:slug>/model-versions/<int:pk>/promote/",
        inference_views.ModelVersionPromoteView.as_view(),
        name="model-version-promote",
    ),
    path("projects/<slug:slug>/tasks/", project_views.TaskListView.as_view(), name="tasks"),
    path("projects/<slug:slug>/tasks/next/", project_views.TaskNextView.as_view(), name="next"),
    path("tasks/<int:pk>/", project_views.TaskDetailView.as_view(), name="task"),
    path("tasks/<int:pk>/submit/", project_views.TaskSubmitView.as_view(), name="task-submit"),
    path("tasks/<int:pk>/review/", project_views.TaskReviewView.as_view(), name="task-review"),
    # queue management and the audit trail
    path("tasks/<int:pk>/assign/", project_views.TaskAssignView.as_view(), name="task-assign"),
    path("tasks/<int:pk>/release/", project_views.TaskReleaseView.as_view(), name="task-release"),
    path("tasks/<int:pk>/reopen/", project_views.TaskReopenView.as_view(), name="task-reopen"),
    path("tasks/<int:pk>/audit/", project_views.TaskAuditView.as_view(), name="task-audit"),
    path("projects/<slug:slug>/audit/", project_views.ProjectAuditView.as_view(), name="audit"),
    path("tasks/<int:pk>/lesions/", annotator_views.TaskLesionsView.as_view(), name="lesions"),
    path("tasks/<int:pk>/effort/", annotator_views.TaskEffortView.as_view(), name="effort"),
    path("lesions/<int:pk>/", annotator_views.LesionDetailView.as_view(), name="lesion"),
    path(
        "lesions/<int:pk>/segment/",
        inference_views.LesionSegmentView.as_view(),
        name="lesion-segment",
    ),
    path("lesions/<int:pk>/masks/", annotator_views.LesionMasksView.as_view(), name="masks"),
    path("masks/<int:pk>/", annotator_views.MaskDetailView.as_view(), name="mask"),
    path("masks/<int:pk>/data/", annotator_views.MaskDataView.as_view(), name="mask-data"),
    path("jobs/<int:pk>/", inference_views.JobDetailView.as_view(), name="job"),
    path(
        "training-jobs/<int:pk>/",
        inference_views.TrainingJobDetailView.as_view(),
        name="training-job",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "redoc/",
        csp_replace(REDOC_POLICY)(SpectacularRedocView.as_view(url_name="schema")),
        name="redoc",
    ),
]

urlpatterns = [
    path("api/", include(api)),
    path("dicomweb/", include("annotator.dicomweb.urls")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", app_page, name="app"),
]
