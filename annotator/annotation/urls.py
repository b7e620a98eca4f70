"""Lesions, masks and effort records of a task (included under ``/api/``)."""

from django.urls import path

from annotator.annotation import views

urlpatterns = [
    path("tasks/<int:pk>/lesions/", views.TaskLesionsView.as_view(), name="lesions"),
    path("tasks/<int:pk>/effort/", views.TaskEffortView.as_view(), name="effort"),
    path("lesions/<int:pk>/", views.LesionDetailView.as_view(), name="lesion"),
    path("lesions/<int:pk>/masks/", views.LesionMasksView.as_view(), name="masks"),
    path("masks/<int:pk>/", views.MaskDetailView.as_view(), name="mask"),
    path("masks/<int:pk>/data/", views.MaskDataView.as_view(), name="mask-data"),
]
