"""DICOMweb routes (mounted at ``/dicomweb/`` by ``projects.intake.urls``, which adds STOW-RS);
``annotator.imaging.dicomweb.views`` lists them."""

from django.urls import URLPattern, path, register_converter
from django.views import View

from annotator.imaging.dicomweb import qido, rendered, wado


class UidConverter:
    regex = r"[0-9]+(?:\.[0-9]+)*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class FramesConverter:
    regex = r"[0-9]+(?:,[0-9]+)*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "dicomuid")
register_converter(FramesConverter, "dicomframes")

S = "studies/<dicomuid:study>"
SE = f"{S}/series/<dicomuid:series>"
I = f"{SE}/instances/<dicomuid:instance>"  # noqa: E741


def dicomweb_patterns(*, studies: type[View], study: type[View]) -> list[URLPattern]:
    """The DICOMweb routes. ``studies`` and ``study`` answer the two URLs where STOW-RS stores
    (POST) beside QIDO-RS and WADO-RS (GET): the intake layer, which stores into a project, passes
    its views (``projects.intake.urls``, the list the site mounts)."""
    return [
        path("studies", studies.as_view(), name="dicomweb-studies"),
        path("series", qido.SeriesSearch.as_view(), name="dicomweb-series"),
        path("instances", qido.InstancesSearch.as_view(), name="dicomweb-instances"),
        path(S, study.as_view(), name="dicomweb-study"),
        path(f"{S}/metadata", wado.StudyMetadata.as_view(), name="dicomweb-study-metadata"),
        path(f"{S}/series", qido.SeriesSearch.as_view(), name="dicomweb-study-series"),
        path(f"{S}/instances", qido.InstancesSearch.as_view(), name="dicomweb-study-instances"),
        path(SE, wado.SeriesRetrieve.as_view(), name="dicomweb-series-retrieve"),
        path(f"{SE}/metadata", wado.SeriesMetadata.as_view(), name="dicomweb-series-metadata"),
        path(f"{SE}/instances", qido.InstancesSearch.as_view(), name="dicomweb-series-instances"),
        path(I, wado.InstanceRetrieve.as_view(), name="dicomweb-instance"),
        path(f"{I}/metadata", wado.InstanceMetadata.as_view(), name="dicomweb-instance-metadata"),
        path(
            f"{I}/frames/<dicomframes:frames>",
            wado.FramesRetrieve.as_view(),
            name="dicomweb-frames",
        ),
        # Rendered and thumbnail resources (annotator.imaging.dicomweb.rendered).
        path(
            f"{I}/rendered", rendered.InstanceRendered.as_view(), name="dicomweb-instance-rendered"
        ),
        path(
            f"{I}/frames/<dicomframes:frames>/rendered",
            rendered.FrameRendered.as_view(),
            name="dicomweb-frames-rendered",
        ),
        path(f"{S}/thumbnail", rendered.StudyThumbnail.as_view(), name="dicomweb-study-thumbnail"),
        path(
            f"{SE}/thumbnail", rendered.SeriesThumbnail.as_view(), name="dicomweb-series-thumbnail"
        ),
        path(
            f"{I}/thumbnail",
            rendered.InstanceThumbnail.as_view(),
            name="dicomweb-instance-thumbnail",
        ),
        path(
            f"{I}/frames/<dicomframes:frames>/thumbnail",
            rendered.FrameThumbnail.as_view(),
            name="dicomweb-frames-thumbnail",
        ),
    ]
