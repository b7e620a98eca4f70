"""RTSTRUCT: each ROI's closed planar contours rasterised onto the reference grid, one at a time."""

from collections.abc import Iterator, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk

from annotator.imaging.dicom.labels.common import (
    DEFAULT_LIMITS,
    EmptyLabelsError,
    Grid,
    LabelError,
    LabelLimits,
    LabelMask,
    TooLarge,
    check_frame_of_reference,
    note,
    points_to_index,
)
from annotator.imaging.dicom.labels.items import ItemBudget, decimals, items, value_count
from annotator.imaging.dicom.labels.polygon import fill, row_crossings


def rtstruct_references(rtstruct: pydicom.Dataset, limits: LabelLimits) -> dict[str, str]:
    """The images the RTSTRUCT names as drawn on (its structure set's list, and each contour's):
    SOP Instance UID -> Referenced SOP Class UID ("" when not given), read item by item within
    ``limits.max_references``."""
    budget, work = _References(limits), _Work(limits)
    budget.listed(rtstruct)
    for roi in items(rtstruct, "ROIContourSequence", limits.max_labels, _too_many_rois(limits)):
        for contour in items(roi, "ContourSequence", work.contours_left(), _too_many(limits)):
            work.contour()
            budget.contour_images(contour)
    return budget.sop_classes


def rtstruct_frames_of_reference(rtstruct: pydicom.Dataset, limits: LabelLimits) -> list[str]:
    return [
        str(item.get("FrameOfReferenceUID", ""))
        for item in items(
            rtstruct,
            "ReferencedFrameOfReferenceSequence",
            limits.max_references,
            f"the RTSTRUCT lists more than {limits.max_references} frames of reference",
        )
    ]


def rtstruct_masks(
    rtstruct: pydicom.Dataset,
    reference: "sitk.Image | Grid",
    slice_uids: Sequence[str] | None = None,
    *,
    frame_of_reference_uid: str | None = None,
    notes: list[str] | None = None,
    limits: LabelLimits = DEFAULT_LIMITS,
) -> Iterator[LabelMask]:
    """Rasterise every ROI's CLOSED_PLANAR contours onto ``reference``'s grid, one ROI at a time.

    The object's counts are checked here, before anything is rasterised (more ROIs than
    ``limits.max_labels`` raise TooLarge); the masks come from the returned iterator, each built
    when asked for, so only one is in memory at once, and the contours' points are checked
    against the limits as they are read. ``slice_uids``: the SOP Instance UIDs of the reference
    slices in z order, when known; used to tell an RTSTRUCT drawn on another series of the same
    frame of reference (rasterised all the same, with a note) from one drawn on this series.
    ``frame_of_reference_uid``: the series' Frame of Reference UID (default: the grid's).
    Iterating raises EmptyLabelsError at the end when no ROI covered a voxel.
    """
    if getattr(rtstruct, "Modality", "RTSTRUCT") != "RTSTRUCT":
        raise LabelError(f"expected an RTSTRUCT, got a {rtstruct.Modality} object")
    grid = Grid.of(reference)
    rois: dict[int, tuple[str, str]] = {}
    too_many = _too_many_rois(limits)
    for roi in items(rtstruct, "StructureSetROISequence", limits.max_labels, too_many):
        number = int(roi.ROINumber)
        rois[number] = (
            str(getattr(roi, "ROIName", "") or f"ROI {number}"),
            str(roi.get("ReferencedFrameOfReferenceUID", "")),
        )
    for _ in items(rtstruct, "ROIContourSequence", limits.max_labels, too_many):
        pass  # counted before any is rasterised
    check_frame_of_reference(
        {uid for _, uid in rois.values()} | set(rtstruct_frames_of_reference(rtstruct, limits)),
        grid,
        frame_of_reference_uid,
        "RTSTRUCT",
    )
    return _rasterised(rtstruct, grid, rois, set(slice_uids or ()), notes, limits)


def _rasterised(
    rtstruct: pydicom.Dataset,
    grid: Grid,
    rois: dict[int, tuple[str, str]],
    slice_uids: set[str],
    notes: list[str] | None,
    limits: LabelLimits,
) -> Iterator[LabelMask]:
    shape = grid.shape
    budget = _References(limits)
    referenced = budget.listed(rtstruct)
    work = _Work(limits)
    any_in_grid = produced = had_contours = False
    for roi_contour in items(rtstruct, "ROIContourSequence", limits.max_labels, ""):
        number = int(roi_contour.ReferencedROINumber)
        name = rois.get(number, (f"ROI {number}", ""))[0]
        mask: np.ndarray | None = None
        contours = 0
        for i, contour in enumerate(
            items(roi_contour, "ContourSequence", work.contours_left(), _too_many(limits))
        ):
            contours += 1
            work.contour()
            referenced |= budget.contour_images(contour)
            what = f"ROI {number} {name!r} contour {i}"
            index = _contour_index(contour, what, grid, work, notes)
            if index is None:
                continue
            z_values = index[:, 2]
            k = int(np.rint(z_values.mean()))
            if np.ptp(z_values) > 0.5:
                note(
                    notes,
                    f"{what} is not in a plane of the grid (it spans {np.ptp(z_values):.2f} "
                    "slices): skipped",
                )
                continue
            if not 0 <= k < shape[0]:  # nearest slice centre, so within half a gap if inside
                note(
                    notes,
                    f"{what} at slice position {z_values.mean():.2f} is more than half a slice "
                    "gap from every slice of the grid: skipped",
                )
                continue
            any_in_grid = True
            work.crossings(row_crossings(index[:, 1], shape[1]))
            filled = fill(index[:, 1], index[:, 0], shape[1:])
            if filled is None:
                continue
            if mask is None:
                mask = np.zeros(shape, dtype=bool)
            rows, cols, block = filled
            mask[k, rows, cols] ^= block  # even-odd: a contour inside another is a hole
        had_contours = had_contours or contours > 0
        if not contours:
            note(notes, f"ROI {number} {name!r} has no contour: skipped")
        elif mask is None or not mask.any():
            note(notes, f"ROI {number} {name!r} covers no voxel of the reference grid")
        else:
            produced = True
            yield LabelMask(name, number, mask)
        mask = None  # the caller has stored it: free it before the next ROI
    if slice_uids and referenced and not referenced & slice_uids:
        note(
            notes,
            "the RTSTRUCT references images of another series; its contours are placed "
            "by their patient coordinates (same frame of reference)",
        )
    if not produced:
        raise EmptyLabelsError(
            "no ROI of the RTSTRUCT covers a voxel of the reference series"
            + ("" if any_in_grid or not had_contours else " (no contour lies on its slices)")
        )


def _contour_index(
    contour: pydicom.Dataset, what: str, grid: Grid, work: "_Work", notes: list[str] | None
) -> np.ndarray | None:
    """The contour's points as continuous (x, y, z) grid indices, or None (noted) when it is
    not an area. Its values are counted before they are parsed; NumberOfContourPoints is
    never trusted (only compared)."""
    kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
    if kind != "CLOSED_PLANAR":
        note(notes, f"{what}: {kind} is not an area, skipped")
        return None
    work.points(value_count(contour, "ContourData") // 3, what)
    data = decimals(contour, "ContourData", what)
    if data.size < 9 or data.size % 3:
        note(notes, f"{what}: fewer than 3 points, skipped")
        return None
    if not np.isfinite(data).all():
        raise LabelError(f"{what}: ContourData holds values that are not finite numbers")
    declared = contour.get("NumberOfContourPoints")
    if declared not in (None, "") and str(declared).strip() != str(data.size // 3):
        note(
            notes,
            f"{what} declares {str(declared).strip()[:20]} points and holds {data.size // 3}: "
            "its ContourData is used",
        )
    index = points_to_index(data.reshape(-1, 3), grid)
    return index if np.isfinite(index).all() else None


class _Work:
    """What the RTSTRUCT's contours have cost so far, against the limits."""

    def __init__(self, limits: LabelLimits) -> None:
        self.limits = limits
        self.contours_seen = self.points_seen = self.crossings_seen = 0

    def contours_left(self) -> int:
        return self.limits.max_contours - self.contours_seen

    def contour(self) -> None:
        self.contours_seen += 1

    def points(self, count: int, what: str) -> None:
        limits = self.limits
        if count > limits.max_points_per_contour:
            raise TooLarge(
                f"{what} holds {count} points, more than the {limits.max_points_per_contour} "
                "a contour may hold"
            )
        self.points_seen += count
        if self.points_seen > limits.max_contour_points:
            raise TooLarge(
                f"the RTSTRUCT's contours hold more than {limits.max_contour_points} points "
                "(ANNOTATOR_MAX_CONTOUR_POINTS)"
            )

    def crossings(self, count: int) -> None:
        self.crossings_seen += count
        if self.crossings_seen > self.limits.max_row_crossings:
            raise TooLarge(
                f"the RTSTRUCT's contours cross the grid's rows more than "
                f"{self.limits.max_row_crossings} times: too complex to rasterise"
            )


class _References(ItemBudget):
    """Referenced-image lists, read item by item, within ``limits.max_references`` in all."""

    def __init__(self, limits: LabelLimits) -> None:
        super().__init__(
            limits.max_references,
            f"the RTSTRUCT lists more than {limits.max_references} referenced images",
        )

    def listed(self, rtstruct: pydicom.Dataset) -> set[str]:
        uids: set[str] = set()
        for frame in self.items(rtstruct, "ReferencedFrameOfReferenceSequence"):
            for study in self.items(frame, "RTReferencedStudySequence"):
                for series in self.items(study, "RTReferencedSeriesSequence"):
                    uids |= self.images(self.items(series, "ContourImageSequence"))
        return uids

    def contour_images(self, contour: pydicom.Dataset) -> set[str]:
        return self.images(self.items(contour, "ContourImageSequence"))


def _too_many_rois(limits: LabelLimits) -> str:
    return (
        f"the RTSTRUCT declares more than {limits.max_labels} ROIs, the most a label object "
        "may hold (ANNOTATOR_MAX_LABELS)"
    )


def _too_many(limits: LabelLimits) -> str:
    return f"the RTSTRUCT holds more than {limits.max_contours} contours"
