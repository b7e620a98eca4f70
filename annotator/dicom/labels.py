"""Existing labels as voxel masks on a reference series grid: RTSTRUCT, DICOM SEG, label images.

Pure functions (no Django): each returns one :class:`LabelMask` per label, a boolean (z, y, x)
array on the reference image's grid, in the order SimpleITK's ``GetArrayFromImage`` gives it.
Geometry is DICOM / ITK patient LPS millimetres throughout (SimpleITK reads NIfTI into LPS too).

Conventions: a voxel belongs to a planar contour when its centre lies inside the polygon or on
its edge (``skimage.draw.polygon``); the contours of one ROI on one slice combine by XOR (even-odd),
so a contour inside another is a hole, and a contour inside the hole an island, whatever the
points' orientation. A contour goes to the slice whose centre is nearest to it; one further than
half a slice gap from every slice of the grid is left out and reported.

Problems that make a whole import meaningless raise a :class:`LabelError` subclass; smaller ones
(an ROI without contours, a contour off the grid) are logged and, when a ``notes`` list is passed,
appended to it so that a caller can show them.
"""

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pydicom
import SimpleITK as sitk
from skimage.draw import polygon

log = logging.getLogger(__name__)

FRAME_OF_REFERENCE_TAG = "0020|0052"
# Tolerances for "the same grid": in-plane offsets and slice positions in voxels, direction
# cosines absolute, spacing relative.
INDEX_TOLERANCE = 0.1
DIRECTION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-3


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


def _note(notes: list[str] | None, message: str) -> None:
    log.warning("%s", message)
    if notes is not None:
        notes.append(message)


def _index_matrix(reference: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(A, origin) such that continuous index (x, y, z) = A @ (point - origin)."""
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    return np.linalg.inv(direction * spacing), np.asarray(reference.GetOrigin(), dtype=float)


def points_to_index(points: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Patient LPS points (n, 3) in mm -> continuous (x, y, z) indices (n, 3) of ``reference``;
    the same as ``TransformPhysicalPointToContinuousIndex`` point by point."""
    matrix, origin = _index_matrix(reference)
    return (np.asarray(points, dtype=float) - origin) @ matrix.T


def _reference_shape(reference: sitk.Image) -> tuple[int, int, int]:
    if reference.GetDimension() != 3:
        raise GeometryMismatch(f"the reference image has {reference.GetDimension()} dimensions")
    x, y, z = reference.GetSize()
    return (z, y, x)


def _check_frame_of_reference(
    uids: set[str], reference: sitk.Image, frame_of_reference_uid: str | None, what: str
) -> None:
    expected = frame_of_reference_uid
    if not expected and reference.HasMetaDataKey(FRAME_OF_REFERENCE_TAG):
        expected = reference.GetMetaData(FRAME_OF_REFERENCE_TAG).strip()
    uids = {u for u in uids if u}
    if expected and uids and expected not in uids:
        raise FrameOfReferenceMismatch(
            f"the {what} is defined in frame of reference {', '.join(sorted(uids))}, "
            f"the reference series in {expected}: its coordinates do not apply to this series"
        )


# --- RTSTRUCT -----------------------------------------------------------------------------------


def _rtstruct_referenced_images(rtstruct: pydicom.Dataset) -> set[str]:
    uids: set[str] = set()
    for frame in getattr(rtstruct, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(frame, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                for image in getattr(series, "ContourImageSequence", []):
                    uids.add(str(image.ReferencedSOPInstanceUID))
    for roi in getattr(rtstruct, "ROIContourSequence", []):
        for contour in getattr(roi, "ContourSequence", []):
            for image in getattr(contour, "ContourImageSequence", []):
                uids.add(str(image.ReferencedSOPInstanceUID))
    return uids


def rtstruct_masks(
    rtstruct: pydicom.Dataset,
    reference: sitk.Image,
    slice_uids: Sequence[str] | None = None,
    *,
    frame_of_reference_uid: str | None = None,
    notes: list[str] | None = None,
) -> list[LabelMask]:
    """Rasterise every ROI's CLOSED_PLANAR contours onto ``reference``'s grid.

    ``slice_uids``: the SOP Instance UIDs of the reference slices in z order, when known; used
    to tell an RTSTRUCT drawn on another series of the same frame of reference (rasterised all
    the same, with a note) from one drawn on this series. ``frame_of_reference_uid``: the
    series' Frame of Reference UID (default: the reference image's 0020|0052 metadata, if any).
    """
    if getattr(rtstruct, "Modality", "RTSTRUCT") != "RTSTRUCT":
        raise LabelError(f"expected an RTSTRUCT, got a {rtstruct.Modality} object")
    shape = _reference_shape(reference)
    rois = {int(roi.ROINumber): roi for roi in getattr(rtstruct, "StructureSetROISequence", [])}
    _check_frame_of_reference(
        {str(getattr(r, "ReferencedFrameOfReferenceUID", "")) for r in rois.values()}
        | {
            str(getattr(f, "FrameOfReferenceUID", ""))
            for f in getattr(rtstruct, "ReferencedFrameOfReferenceSequence", [])
        },
        reference,
        frame_of_reference_uid,
        "RTSTRUCT",
    )
    if slice_uids:
        referenced = _rtstruct_referenced_images(rtstruct)
        if referenced and not referenced & set(slice_uids):
            _note(
                notes,
                "the RTSTRUCT references images of another series; its contours are placed "
                "by their patient coordinates (same frame of reference)",
            )

    results: list[LabelMask] = []
    any_in_grid = False
    for roi_contour in getattr(rtstruct, "ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        roi = rois.get(number)
        name = str(getattr(roi, "ROIName", "") or f"ROI {number}")
        contours = list(getattr(roi_contour, "ContourSequence", []))
        if not contours:
            _note(notes, f"ROI {number} {name!r} has no contour: skipped")
            continue
        mask = np.zeros(shape, dtype=bool)
        for i, contour in enumerate(contours):
            kind = str(getattr(contour, "ContourGeometricType", "CLOSED_PLANAR"))
            if kind != "CLOSED_PLANAR":
                _note(notes, f"ROI {number} {name!r} contour {i}: {kind} is not an area, skipped")
                continue
            data = np.asarray(contour.ContourData, dtype=float)
            if data.size < 9 or data.size % 3:
                _note(notes, f"ROI {number} {name!r} contour {i}: fewer than 3 points, skipped")
                continue
            index = points_to_index(data.reshape(-1, 3), reference)
            z_values = index[:, 2]
            k = int(np.rint(z_values.mean()))
            if np.ptp(z_values) > 0.5:
                _note(
                    notes,
                    f"ROI {number} {name!r} contour {i} is not in a plane of the grid (it spans "
                    f"{np.ptp(z_values):.2f} slices): skipped",
                )
                continue
            if not 0 <= k < shape[0]:  # nearest slice centre, so within half a gap if inside
                _note(
                    notes,
                    f"ROI {number} {name!r} contour {i} at slice position {z_values.mean():.2f} "
                    f"is more than half a slice gap from every slice of the grid: skipped",
                )
                continue
            any_in_grid = True
            rows, cols = polygon(index[:, 1], index[:, 0], shape=shape[1:])
            plane = np.zeros(shape[1:], dtype=bool)
            plane[rows, cols] = True
            mask[k] ^= plane
        results.append(LabelMask(name, number, mask))
    if not results or not any(r.mask.any() for r in results):
        raise EmptyLabelsError(
            "no ROI of the RTSTRUCT covers a voxel of the reference series"
            + ("" if any_in_grid or not results else " (no contour lies on its slices)")
        )
    for r in results:
        if not r.mask.any():
            _note(notes, f"ROI {r.number} {r.name!r} covers no voxel of the reference grid")
    return results


# --- DICOM SEG ----------------------------------------------------------------------------------


def _first(dataset: Any, keyword: str) -> Any:
    sequence = getattr(dataset, keyword, None)
    return sequence[0] if sequence else None


def _frame_attribute(seg: pydicom.Dataset, per_frame: Any, group: str, attribute: str) -> Any:
    for source in (per_frame, _first(seg, "SharedFunctionalGroupsSequence")):
        item = _first(source, group) if source is not None else None
        if item is not None and attribute in item:
            return item[attribute].value
    return None


def _seg_referenced_images(seg: pydicom.Dataset) -> set[str]:
    uids: set[str] = set()
    for series in getattr(seg, "ReferencedSeriesSequence", []):
        for image in getattr(series, "ReferencedInstanceSequence", []):
            uids.add(str(image.ReferencedSOPInstanceUID))
    for frame in getattr(seg, "PerFrameFunctionalGroupsSequence", []):
        for derivation in getattr(frame, "DerivationImageSequence", []):
            for source in getattr(derivation, "SourceImageSequence", []):
                uids.add(str(source.ReferencedSOPInstanceUID))
    return uids


def seg_masks(
    seg: pydicom.Dataset,
    reference: sitk.Image,
    slice_uids: Sequence[str],
    *,
    frame_of_reference_uid: str | None = None,
    notes: list[str] | None = None,
) -> list[LabelMask]:
    """Every segment of a DICOM SEG (BINARY, FRACTIONAL or LABELMAP) on ``reference``'s grid.

    Frames are placed by their plane position (PerFrameFunctionalGroupsSequence); a segment
    may cover only some slices, and segments may overlap (each gets its own mask). FRACTIONAL
    values count from half of MaximumFractionalValue. ``slice_uids``: the reference slices'
    SOP Instance UIDs in z order; a SEG that references none of them was made on another series.
    """
    if getattr(seg, "Modality", "SEG") != "SEG":
        raise LabelError(f"expected a DICOM SEG, got a {seg.Modality} object")
    shape = _reference_shape(reference)
    _check_frame_of_reference(
        {str(getattr(seg, "FrameOfReferenceUID", ""))}, reference, frame_of_reference_uid, "SEG"
    )
    referenced = _seg_referenced_images(seg)
    if referenced and slice_uids and not referenced & set(slice_uids):
        series = ", ".join(
            str(s.SeriesInstanceUID) for s in getattr(seg, "ReferencedSeriesSequence", [])
        )
        raise OtherSeriesError(
            f"the SEG was made on another series ({series or 'unknown'}): it references none "
            "of this series' images"
        )

    kind = str(getattr(seg, "SegmentationType", "BINARY"))
    segments = {
        int(s.SegmentNumber): str(getattr(s, "SegmentLabel", "") or f"segment {s.SegmentNumber}")
        for s in getattr(seg, "SegmentSequence", [])
    }
    pixels = np.asarray(seg.pixel_array)
    frames = int(getattr(seg, "NumberOfFrames", 1))
    pixels = pixels.reshape(frames, int(seg.Rows), int(seg.Columns))
    if kind == "FRACTIONAL":
        maximum = float(getattr(seg, "MaximumFractionalValue", 255))
        pixels = pixels.astype(float) / maximum >= 0.5
    elif kind != "LABELMAP":
        pixels = pixels != 0

    matrix, origin = _index_matrix(reference)
    ref_direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    ref_spacing = np.asarray(reference.GetSpacing(), dtype=float)
    masks = {number: np.zeros(shape, dtype=bool) for number in segments}
    per_frame = list(getattr(seg, "PerFrameFunctionalGroupsSequence", [])) or [None] * frames
    if len(per_frame) != frames:
        raise LabelError(
            f"the SEG has {frames} frames but {len(per_frame)} per-frame functional groups"
        )
    for f, item in enumerate(per_frame):
        position = _frame_attribute(seg, item, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _frame_attribute(
            seg, item, "PlaneOrientationSequence", "ImageOrientationPatient"
        )
        spacing = _frame_attribute(seg, item, "PixelMeasuresSequence", "PixelSpacing")
        if position is None or orientation is None:
            raise GeometryMismatch(f"SEG frame {f} has no plane position or orientation")
        row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        if not (
            np.allclose(row_dir, ref_direction[:, 0], atol=DIRECTION_TOLERANCE)
            and np.allclose(col_dir, ref_direction[:, 1], atol=DIRECTION_TOLERANCE)
        ):
            raise GeometryMismatch(
                f"SEG frame {f} is oriented {list(orientation)}, the reference series "
                f"{list(ref_direction[:, :2].T.ravel())}: resample it first"
            )
        if spacing is not None and not np.allclose(
            [float(spacing[1]), float(spacing[0])], ref_spacing[:2], rtol=SPACING_TOLERANCE
        ):
            raise GeometryMismatch(
                f"SEG frame {f} has pixel spacing {list(spacing)}, the reference series "
                f"{list(ref_spacing[1::-1])}"
            )
        x0, y0, z = matrix @ (np.asarray(position, dtype=float) - origin)
        k, i0, j0 = (int(np.rint(v)) for v in (z, y0, x0))
        if max(abs(y0 - i0), abs(x0 - j0)) > INDEX_TOLERANCE:
            raise GeometryMismatch(
                f"SEG frame {f} starts at index ({x0:.2f}, {y0:.2f}) of the reference grid, "
                "between its voxels: resample it first"
            )
        if abs(z - k) > INDEX_TOLERANCE:
            _note(notes, f"SEG frame {f} lies {abs(z - k):.2f} slices off slice {k}")
        if not 0 <= k < shape[0]:
            if pixels[f].any():
                _note(notes, f"SEG frame {f} lies outside the reference series: skipped")
            continue
        # Paste the frame at its in-plane offset, clipped to the grid.
        rows, cols = pixels.shape[1:]
        r0, r1 = max(i0, 0), min(i0 + rows, shape[1])
        c0, c1 = max(j0, 0), min(j0 + cols, shape[2])
        if r0 >= r1 or c0 >= c1:
            continue
        frame = pixels[f, r0 - i0 : r1 - i0, c0 - j0 : c1 - j0]
        if kind == "LABELMAP":
            for number, mask in masks.items():
                mask[k, r0:r1, c0:c1] |= frame == number
            continue
        number_value = _frame_attribute(
            seg, item, "SegmentIdentificationSequence", "ReferencedSegmentNumber"
        )
        if number_value is None:
            raise LabelError(f"SEG frame {f} names no segment")
        number = int(number_value)
        if number not in masks:
            masks[number] = np.zeros(shape, dtype=bool)
            segments[number] = f"segment {number}"
        masks[number][k, r0:r1, c0:c1] |= frame

    results = []
    for number in sorted(masks):
        if masks[number].any():
            results.append(LabelMask(segments[number], number, masks[number]))
        else:
            _note(notes, f"segment {number} {segments[number]!r} is empty on this series: skipped")
    if not results:
        raise EmptyLabelsError("no segment of the SEG covers a voxel of the reference series")
    return results


# --- label images (NIfTI, NRRD, MetaImage) ------------------------------------------------------


def check_same_grid(image: sitk.Image, reference: sitk.Image, what: str = "label image") -> None:
    """Raise GeometryMismatch unless ``image`` has ``reference``'s size, spacing, origin and
    direction (origin within a tenth of a voxel)."""
    if image.GetSize() != reference.GetSize():
        raise GeometryMismatch(
            f"the {what}'s size {list(image.GetSize())} differs from the reference series' "
            f"{list(reference.GetSize())}"
        )
    spacing = np.asarray(reference.GetSpacing())
    if not np.allclose(image.GetSpacing(), spacing, rtol=SPACING_TOLERANCE):
        raise GeometryMismatch(
            f"the {what}'s spacing {list(image.GetSpacing())} differs from the reference "
            f"series' {list(spacing)}"
        )
    if not np.allclose(image.GetDirection(), reference.GetDirection(), atol=DIRECTION_TOLERANCE):
        raise GeometryMismatch(
            f"the {what}'s direction {list(image.GetDirection())} differs from the reference "
            f"series' {list(reference.GetDirection())} (a RAS/LPS or axis flip?)"
        )
    offset = points_to_index(np.asarray([image.GetOrigin()]), reference)[0]
    if np.abs(offset).max() > INDEX_TOLERANCE:
        raise GeometryMismatch(
            f"the {what}'s origin {list(image.GetOrigin())} is {list(np.round(offset, 2))} "
            f"voxels from the reference series' {list(reference.GetOrigin())}"
        )


def _same_lattice(image: sitk.Image, reference: sitk.Image) -> bool:
    """True when ``image``'s voxel centres are exactly ``reference``'s, in another axis order or
    direction (a flipped or permuted copy of the grid, as some tools write NIfTI)."""
    size = np.asarray(image.GetSize(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    to_reference = _index_matrix(reference)[0] @ (direction * np.asarray(image.GetSpacing()))
    permutation = np.rint(to_reference)
    if not (
        np.allclose(to_reference, permutation, atol=SPACING_TOLERANCE)
        and np.array_equal(np.abs(permutation).sum(axis=0), np.ones(3))
        and np.array_equal(np.abs(permutation).sum(axis=1), np.ones(3))
    ):
        return False
    corners = points_to_index(
        np.asarray(
            [
                image.GetOrigin(),
                image.TransformIndexToPhysicalPoint([int(n) - 1 for n in image.GetSize()]),
            ]
        ),
        reference,
    )
    if np.abs(corners - np.rint(corners)).max() > INDEX_TOLERANCE:
        return False
    mapped = np.sort(np.rint(corners), axis=0)
    return bool(
        np.array_equal(mapped[0], np.zeros(3))
        and np.array_equal(mapped[1], np.asarray(reference.GetSize(), dtype=float) - 1)
        and np.array_equal(np.sort(size), np.sort(np.asarray(reference.GetSize(), dtype=float)))
    )


def label_image_masks(
    label: sitk.Image,
    reference: sitk.Image,
    names: dict[int, str] | None = None,
    *,
    notes: list[str] | None = None,
) -> list[LabelMask]:
    """One LabelMask per non-zero value of a label map on ``reference``'s grid.

    The label image must be on the reference grid (size, spacing, direction, origin within a
    tenth of a voxel), or be the same voxels in another axis order or direction (a flipped
    NIfTI): those are reordered exactly, never interpolated. Anything else is a GeometryMismatch.
    """
    if label.GetNumberOfComponentsPerPixel() != 1:
        raise LabelError("the label image has several components per voxel")
    if label.GetDimension() == 2 and reference.GetSize()[2] == 1:
        label = sitk.JoinSeries(label)
    if label.GetDirection() != reference.GetDirection() and _same_lattice(label, reference):
        _note(notes, "the label image is the reference grid in another axis order: reordered")
        label = sitk.Resample(
            label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID()
        )
    check_same_grid(label, reference)
    array = sitk.GetArrayFromImage(label)
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.rint(array)):
            raise LabelError("the label image holds non-integer values: not a label map")
        array = array.astype(np.int64)
    values = [int(v) for v in np.unique(array) if v != 0]
    if not values:
        raise EmptyLabelsError("the label image holds no label (every voxel is 0)")
    names = names or {}
    return [LabelMask(names.get(v, f"label {v}"), v, array == v) for v in values]
