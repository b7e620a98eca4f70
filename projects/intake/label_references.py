"""Which series of a project an RTSTRUCT or DICOM SEG was drawn on, whatever the upload order.

The object's own references decide, most specific first:

1. the Series Instance UIDs it names (RTSTRUCT: RTReferencedSeriesSequence; SEG:
   ReferencedSeriesSequence), when exactly one series of the project has one of them;
2. the images it names (RTSTRUCT: the structure set's and each contour's ContourImageSequence;
   SEG: ReferencedInstanceSequence and each frame's DerivationImageSequence): the series holding
   the most of them;
3. its frame of reference, narrowed to the series whose images are of the SOP class its
   references name (CT, MR, PET ... Image Storage), where it names one. CT, MR and PET of one
   patient often share a frame of reference: the SOP class tells an MR's RTSTRUCT from a CT's
   even when its UIDs are stale (an export that re-identified the images and not the contours).

Nothing else is guessed: a choice still open after these (two series of one class in one frame
of reference, no reference left) is refused with the candidates named, so the same object lands
on the same series in one upload or in several, in any order.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pydicom
from pydicom.uid import UID

from annotator.core.errors import InvalidInput
from annotator.imaging.dicom.labels import (
    LabelLimits,
    frames_of_reference,
    referenced_images,
    referenced_series,
)
from annotator.models import Instance, Series
from projects.models import Project

# Referenced UIDs sent to the database per query (SQLite allows 32,766 parameters).
CHUNK = 500


@dataclass(frozen=True)
class Target:
    """The series an object was drawn on, and how it was told (for the import report)."""

    series: Series
    matched_by: str


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sop_class_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def _describe(series: Iterable[Series]) -> str:
    return ", ".join(f"{s.pk} ({s.modality} {s.series_instance_uid})" for s in series)


def label_target(
    project: Project,
    ds: pydicom.Dataset,
    what: str,
    uid_map: Callable[[str], str],
    limits: LabelLimits,
) -> Target:
    """The series of ``project`` the RTSTRUCT or SEG ``ds`` was drawn on (see the module's
    docstring for the rule). ``uid_map`` maps the object's UIDs to the project's (identity, or
    the de-identification mapping). Raises InvalidInput, naming ``files``, when no series or
    more than one fits."""
    in_project = Series.objects.filter(study__project=project).select_related(
        "volume", "study__project"
    )
    series_uids = {uid_map(uid) for uid in referenced_series(ds, limits)}
    images = {uid_map(uid): sop_class for uid, sop_class in referenced_images(ds, limits).items()}
    named = [
        series
        for chunk in _chunks(series_uids)
        for series in in_project.filter(series_instance_uid__in=chunk)
    ]
    if len(named) == 1:
        return Target(named[0], "its referenced Series Instance UID")

    overlap: Counter[int] = Counter()
    for chunk in _chunks(images):
        rows = Instance.objects.filter(series__study__project=project, sop_instance_uid__in=chunk)
        overlap.update(rows.values_list("series_id", flat=True))
    if named:  # several series named: the images decide among them
        overlap = Counter({pk: n for pk, n in overlap.items() if pk in {s.pk for s in named}})
    ranked = overlap.most_common(2)
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        pk, count = ranked[0]
        return Target(in_project.get(pk=pk), f"{count} of its referenced images")
    if ranked:
        tied = in_project.filter(pk__in=[pk for pk, n in overlap.items() if n == ranked[0][1]])
        raise _refused(what, f"its referenced images are in several series: {_describe(tied)}")

    frames = [uid_map(uid) for uid in frames_of_reference(ds, limits)]
    same_frame = list(in_project.filter(frame_of_reference_uid__in=frames).order_by("pk"))
    classes = {sop_class for sop_class in images.values() if sop_class}
    if not same_frame:
        listed = ", ".join(sorted(series_uids)) or "none"
        raise _refused(
            what,
            f"none of the series it refers to ({listed}) nor any of its frame of reference "
            f"({', '.join(frames) or 'none'}) is in the project: upload them first or together",
        )
    fitting = same_frame
    if classes:
        fitting = [
            s for s in same_frame if s.instances.filter(sop_class_uid__in=list(classes)).exists()
        ]
        kinds = ", ".join(sorted(_sop_class_name(c) for c in classes))
        if not fitting:
            raise _refused(
                what,
                f"it was drawn on {kinds} images, and the project's series in its frame of "
                f"reference are other images ({_describe(same_frame)}): upload the series it "
                "was drawn on",
            )
        how = f"its frame of reference and the kind of images it was drawn on ({kinds})"
    else:
        how = "its frame of reference (the only series in it)"
    if len(fitting) > 1:
        raise _refused(
            what,
            f"its references match no image of the project, and several series fit its frame "
            f"of reference: {_describe(fitting)}",
        )
    return Target(fitting[0], how)


def _refused(what: str, reason: str) -> InvalidInput:
    message = f"{what}: {reason}"
    return InvalidInput(message, fields={"files": [message]})
