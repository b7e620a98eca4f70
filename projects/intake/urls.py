"""DICOMweb with STOW-RS (included at ``/dicomweb/``): the imaging layer's read-only routes, with
the two URLs that also store (POST) answered by views that import into a project."""

from annotator.imaging.dicomweb.urls import dicomweb_patterns
from projects.intake import stow

urlpatterns = dicomweb_patterns(studies=stow.StudiesSearchOrStore, study=stow.StudyRetrieveOrStore)
