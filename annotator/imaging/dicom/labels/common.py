"""What every kind of label shares: the result type, the errors, the limits and the grid."""

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk

log = logging.getLogger("annotator.imaging.dicom.labels")

FRAME_OF_REFERENCE_TAG = "0020|0052"
# Tolerances for "the same grid": in-plane offsets and slice positions in voxels, direction
# cosines absolute, spacing relative.
INDEX_TOLERANCE = 0.1
DIRECTION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-3
# Notes kept per object: a hostile one could otherwise fill the import report with millions.
MAX_NOTES = 50


class LabelMask(NamedTuple):
    name: str
    number: int
    mask: np.ndarray  # bool, (z, y, x) on the reference grid


class LabelError(ValueError):
    """The labels cannot be placed on the reference series."""


class FrameOfReferenceMismatch(LabelError):
    """The labels are defined in another frame of reference than the reference series."""


class OtherSeriesError(LabelError):
    """The labels were drawn on another series than the reference one."""


class GeometryMismatch(LabelError):
    """A label image or SEG frame is not on the reference series' grid."""


class EmptyLabelsError(LabelError):
    """No label holds a single voxel on the reference grid."""


class TooLarge(LabelError):
    """The object holds more than :class:`LabelLimits` allow; the message names the limit."""


@dataclass(frozen=True)
class LabelLimits:
    """What one label object (RTSTRUCT, SEG, label map) may hold. Each count is checked as the
    object is read, before anything is allocated for what it declares; the Django settings
    ``MAX_LABELS`` and ``MAX_CONTOUR_POINTS`` set the first two."""

    max_labels: int = 256  # segments, ROIs, or values of a label map
    max_contour_points: int = 10_000_000  # all the contours' points together
    max_points_per_contour: int = 100_000
    max_contours: int = 200_000  # all the ROIs' contours together
    # Rasterising work: a contour's edges crossing the grid's rows, all contours together (a
    # zigzag of n points across a 512-row slice crosses n x 512 of them).
    max_row_crossings: int = 100_000_000
    # Items of the sequences that list referenced series, instances and frames of reference.
    max_references: int = 100_000


DEFAULT_LIMITS = LabelLimits()


def note(notes: list[str] | None, message: str) -> None:
    """Log ``message`` and add it to ``notes`` (up to MAX_NOTES of them)."""
    if notes is None:
        log.warning("%s", message)
        return
    if len(notes) < MAX_NOTES:
        log.warning("%s", message)
        notes.append(message)
    elif len(notes) == MAX_NOTES:
        notes.append("further notes left out")


@dataclass(frozen=True)
class Grid:
    """The reference series' voxel grid: all the labels need of its image, without its voxels.

    SimpleITK's conventions: ``size`` and ``spacing`` are (x, y, z), ``direction`` the 3 x 3
    direction cosines row-major, LPS millimetres.
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    frame_of_reference_uid: str = ""

    @classmethod
    def of(cls, reference: "sitk.Image | Grid") -> "Grid":
        if isinstance(reference, Grid):
            return reference
        if reference.GetDimension() != 3:
            raise GeometryMismatch(f"the reference image has {reference.GetDimension()} dimensions")
        uid = ""
        if reference.HasMetaDataKey(FRAME_OF_REFERENCE_TAG):
            uid = reference.GetMetaData(FRAME_OF_REFERENCE_TAG).strip()
        x, y, z = reference.GetSize()
        sx, sy, sz = reference.GetSpacing()
        ox, oy, oz = reference.GetOrigin()
        return cls((x, y, z), (sx, sy, sz), (ox, oy, oz), tuple(reference.GetDirection()), uid)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x): the shape of a mask on this grid, as GetArrayFromImage gives it."""
        x, y, z = self.size
        return (z, y, x)

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, origin) such that continuous index (x, y, z) = A @ (point - origin)."""
        scaled = self.direction_matrix * np.asarray(self.spacing, dtype=float)
        return np.linalg.inv(scaled), np.asarray(self.origin, dtype=float)


def points_to_index(points: np.ndarray, reference: "sitk.Image | Grid") -> np.ndarray:
    """Patient LPS points (n, 3) in mm -> continuous (x, y, z) indices (n, 3) of ``reference``;
    the same as ``TransformPhysicalPointToContinuousIndex`` point by point."""
    matrix, origin = Grid.of(reference).index_matrix()
    return (np.asarray(points, dtype=float) - origin) @ matrix.T


def check_frame_of_reference(
    uids: set[str], grid: Grid, frame_of_reference_uid: str | None, what: str
) -> None:
    expected = frame_of_reference_uid or grid.frame_of_reference_uid
    uids = {u for u in uids if u}
    if expected and uids and expected not in uids:
        raise FrameOfReferenceMismatch(
            f"the {what} is defined in frame of reference {', '.join(sorted(uids))}, "
            f"the reference series in {expected}: its coordinates do not apply to this series"
        )
