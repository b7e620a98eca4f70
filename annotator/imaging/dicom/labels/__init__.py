"""Existing labels as voxel masks on a reference series grid: RTSTRUCT, DICOM SEG, label images.

Pure functions (no Django): each yields one :class:`LabelMask` per label, a boolean (z, y, x)
array on the reference grid, in the order SimpleITK's ``GetArrayFromImage`` gives it. The
reference is a SimpleITK image or just its :class:`Grid` (no voxels needed). Geometry is DICOM /
ITK patient LPS millimetres throughout (SimpleITK reads NIfTI into LPS too).

Memory is bounded whatever an object declares: its counts are checked against
:class:`LabelLimits` as it is read (sequences item by item, numbers counted in their bytes)
before anything is allocated for them, and the masks are made one at a time, when the caller
asks for the next; a caller that stores each before asking for the next holds one mask at once.

Conventions: a voxel belongs to a planar contour when its centre lies inside the polygon or on
its edge (``skimage.draw.polygon``'s rule, by a faster scanline fill); the contours of one ROI on
one slice combine by XOR (even-odd), so a contour inside another is a hole, and a contour inside
the hole an island, whatever the points' orientation. A contour goes to the slice whose centre
is nearest to it; one further than half a slice gap from every slice of the grid is left out and
reported.

Problems that make a whole import meaningless raise a :class:`LabelError` subclass (TooLarge
for a count over the limits); smaller ones (an ROI without contours, a contour off the grid) are
logged and, when a ``notes`` list is passed, appended to it so that a caller can show them.
"""

from collections.abc import Callable

import pydicom

from annotator.imaging.dicom.labels.common import (
    DEFAULT_LIMITS,
    EmptyLabelsError,
    FrameOfReferenceMismatch,
    GeometryMismatch,
    Grid,
    LabelError,
    LabelLimits,
    LabelMask,
    OtherSeriesError,
    TooLarge,
    points_to_index,
)
from annotator.imaging.dicom.labels.items import items
from annotator.imaging.dicom.labels.label_image import check_same_grid, label_image_masks
from annotator.imaging.dicom.labels.rtstruct import (
    rtstruct_frames_of_reference,
    rtstruct_masks,
    rtstruct_references,
)
from annotator.imaging.dicom.labels.seg import seg_masks, seg_references

__all__ = [
    "DEFAULT_LIMITS",
    "EmptyLabelsError",
    "FrameOfReferenceMismatch",
    "GeometryMismatch",
    "Grid",
    "LabelError",
    "LabelLimits",
    "LabelMask",
    "OtherSeriesError",
    "TooLarge",
    "check_same_grid",
    "frames_of_reference",
    "label_image_masks",
    "points_to_index",
    "referenced_images",
    "referenced_series",
    "rtstruct_masks",
    "seg_masks",
]


def referenced_images(ds: pydicom.Dataset, limits: LabelLimits = DEFAULT_LIMITS) -> dict[str, str]:
    """The images an RTSTRUCT or SEG says it was drawn on: SOP Instance UID -> Referenced SOP
    Class UID ("" where the object does not say)."""
    reader: Callable[[pydicom.Dataset, LabelLimits], dict[str, str]] = (
        seg_references if ds.get("Modality") == "SEG" else rtstruct_references
    )
    return reader(ds, limits)


def referenced_series(ds: pydicom.Dataset, limits: LabelLimits = DEFAULT_LIMITS) -> list[str]:
    """The Series Instance UIDs an RTSTRUCT or SEG names as the series it was drawn on."""
    what = f"the object lists more than {limits.max_references} referenced series"
    uids = [
        str(s.get("SeriesInstanceUID", ""))
        for s in items(ds, "ReferencedSeriesSequence", limits.max_references, what)
    ]
    for frame in items(ds, "ReferencedFrameOfReferenceSequence", limits.max_references, what):
        for study in items(frame, "RTReferencedStudySequence", limits.max_references, what):
            uids += [
                str(s.get("SeriesInstanceUID", ""))
                for s in items(study, "RTReferencedSeriesSequence", limits.max_references, what)
            ]
    return [uid for uid in uids if uid]


def frames_of_reference(ds: pydicom.Dataset, limits: LabelLimits = DEFAULT_LIMITS) -> list[str]:
    """The Frame of Reference UIDs an RTSTRUCT or SEG is defined in."""
    uids = rtstruct_frames_of_reference(ds, limits)
    return [uid for uid in [*uids, str(ds.get("FrameOfReferenceUID", ""))] if uid]
