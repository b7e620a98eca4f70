"""Segmentation, pre-annotation, training and their jobs (included under ``/api/``)."""

from django.urls import path

from inference import views

urlpatterns = [
    path(
        "projects/<slug:slug>/rounds/<int:number>/preannotate/",
        views.RoundPreannotateView.as_view(),
        name="round-preannotate",
    ),
    path(
        "projects/<slug:slug>/rounds/<int:number>/train/",
        views.RoundTrainView.as_view(),
        name="round-train",
    ),
    path(
        "projects/<slug:slug>/model-versions/",
        views.ModelVersionListView.as_view(),
        name="model-versions",
    ),
    path(
        "projects/<slug:slug>/model-versions/<int:pk>/promote/",
        views.ModelVersionPromoteView.as_view(),
        name="model-version-promote",
    ),
    path(
        "lesions/<int:pk>/segment/",
        views.LesionSegmentView.as_view(),
        name="lesion-segment",
    ),
    path("jobs/<int:pk>/", views.JobDetailView.as_view(), name="job"),
    path(
        "training-jobs/<int:pk>/",
        views.TrainingJobDetailView.as_view(),
        name="training-job",
    ),
]
