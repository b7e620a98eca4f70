"""DICOM SEG (BINARY, FRACTIONAL, LABELMAP): frames pasted onto the reference grid.

Nothing is allocated for what the object declares. Its segments and per-frame functional
groups are read item by item against the limits, every frame is placed and checked without its
pixels, and then the masks are made one segment at a time, decoding only that segment's frames
(a LABELMAP's frames are decoded once into a single label volume). Memory holds one mask of the
reference grid, one frame and the object's bytes, whatever the number of segments.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.pixels import iter_pixels

from annotator.imaging.dicom.labels.common import (
    DEFAULT_LIMITS,
    DIRECTION_TOLERANCE,
    INDEX_TOLERANCE,
    SPACING_TOLERANCE,
    EmptyLabelsError,
    GeometryMismatch,
    Grid,
    LabelError,
    LabelLimits,
    LabelMask,
    OtherSeriesError,
    TooLarge,
    check_frame_of_reference,
    note,
)
from annotator.imaging.dicom.labels.items import ItemBudget, first_item, items

GROUPS = (
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "PixelMeasuresSequence",
    "SegmentIdentificationSequence",
)


class _Placement(NamedTuple):
    """Where frame ``frame`` goes: slice ``k`` (None: outside the grid), ``rows`` x ``cols`` of
    the grid from ``source_rows`` x ``source_cols`` of the frame."""

    frame: int
    k: int | None
    rows: slice = slice(0)
    cols: slice = slice(0)
    source_rows: slice = slice(0)
    source_cols: slice = slice(0)


@dataclass
class _Plan:
    placements: dict[int, list[_Placement]]  # by segment number (0: every segment, LABELMAP)
    referenced: set[str]
    problem: LabelError | None = None


def seg_references(seg: pydicom.Dataset, limits: LabelLimits) -> dict[str, str]:
    """The images the SEG says it was made from (its referenced series' instances and each
    frame's source images): SOP Instance UID -> Referenced SOP Class UID ("" when not given),
    read within ``limits``."""
    refs = _References(limits)
    refs.listed(seg)
    for item in _per_frame(seg, limits):
        if item is not None:
            refs.sources(item)
    return refs.sop_classes


def seg_masks(
    seg: pydicom.Dataset,
    reference: "sitk.Image | Grid",
    slice_uids: Sequence[str],
    *,
    frame_of_reference_uid: str | None = None,
    notes: list[str] | None = None,
    limits: LabelLimits = DEFAULT_LIMITS,
) -> Iterator[LabelMask]:
    """Every segment of a DICOM SEG on ``reference``'s grid, one at a time.

    Frames are placed by their plane position (PerFrameFunctionalGroupsSequence); a segment may
    cover only some slices, and segments may overlap (each gets its own mask). FRACTIONAL values
    count from half of MaximumFractionalValue. ``slice_uids``: the reference slices' SOP Instance
    UIDs in z order; a SEG that references none of them was made on another series.

    Everything but the pixels is checked here (counts against ``limits``, frame of reference,
    references, every frame's geometry); the masks come from the returned iterator, each made
    when asked for. Iterating raises EmptyLabelsError at the end when no segment held a voxel.
    """
    if getattr(seg, "Modality", "SEG") != "SEG":
        raise LabelError(f"expected a DICOM SEG, got a {seg.Modality} object")
    grid = Grid.of(reference)
    check_frame_of_reference(
        {str(seg.get("FrameOfReferenceUID", ""))}, grid, frame_of_reference_uid, "SEG"
    )
    kind = str(seg.get("SegmentationType", "BINARY"))
    segments: dict[int, str] = {}
    declared = (
        f"the SEG declares more than {limits.max_labels} segments, the most a label object "
        "may hold (ANNOTATOR_MAX_LABELS)"
    )
    for item in items(seg, "SegmentSequence", limits.max_labels, declared):
        number = int(item.SegmentNumber)
        segments[number] = str(
            item.get("SegmentLabel", "")
            or item.get("SegmentDescription", "")
            or f"segment {number}"
        )
    rows, columns = int(seg.Rows), int(seg.Columns)
    if rows > grid.size[1] or columns > grid.size[0]:
        raise GeometryMismatch(
            f"the SEG's frames ({rows} x {columns}) are larger than the reference series' "
            f"slices ({grid.size[1]} x {grid.size[0]})"
        )
    plan = _plan(seg, grid, kind, (rows, columns), limits, notes)
    if plan.referenced and slice_uids and not plan.referenced & set(slice_uids):
        series = ", ".join(
            str(s.get("SeriesInstanceUID", ""))
            for s in items(seg, "ReferencedSeriesSequence", limits.max_references, "")
        )
        raise OtherSeriesError(
            f"the SEG was made on another series ({series or 'unknown'}): it references none "
            "of this series' images"
        )
    if plan.problem is not None:
        raise plan.problem
    if kind == "LABELMAP":
        return _labelmap_masks(seg, grid, segments, plan, notes)
    return _segment_masks(seg, grid, kind, segments, plan, notes)


def _plan(
    seg: pydicom.Dataset,
    grid: Grid,
    kind: str,
    frame_size: tuple[int, int],
    limits: LabelLimits,
    notes: list[str] | None,
) -> _Plan:
    """Every frame placed on the grid from its functional groups, without decoding it. The
    first geometry problem is kept (not raised) so that a SEG of another series says so."""
    refs = _References(limits)
    plan = _Plan({}, refs.listed(seg))
    shared = first_item(seg, "SharedFunctionalGroupsSequence")
    shared_groups = {group: first_item(shared, group) for group in GROUPS}
    for f, item in enumerate(_per_frame(seg, limits)):
        if item is not None:
            plan.referenced |= refs.sources(item)
        if plan.problem is not None:
            continue  # only the references are still wanted
        groups = {group: first_item(item, group) or shared_groups[group] for group in GROUPS}
        try:
            placement = _place(f, groups, grid, frame_size, notes)
            number = 0
            if kind != "LABELMAP":
                value = _attribute(
                    groups, "SegmentIdentificationSequence", "ReferencedSegmentNumber"
                )
                if value is None:
                    raise LabelError(f"SEG frame {f} names no segment")
                number = int(value)
        except LabelError as exc:
            plan.problem = exc
            continue
        except (TypeError, ValueError) as exc:
            plan.problem = LabelError(f"SEG frame {f}: {exc}")
            continue
        if placement is not None:
            plan.placements.setdefault(number, []).append(placement)
            if len(plan.placements) > limits.max_labels:
                raise TooLarge(
                    f"the SEG's frames reference more than {limits.max_labels} segments, the "
                    "most a label object may hold (ANNOTATOR_MAX_LABELS)"
                )
    return plan


def _per_frame(seg: pydicom.Dataset, limits: LabelLimits) -> Iterator[pydicom.Dataset | None]:
    """Each frame's functional groups (None for every frame when the SEG has none), refusing a
    count that differs from NumberOfFrames."""
    frames = int(seg.get("NumberOfFrames", 1) or 1)
    what = f"the SEG has {frames} frames but more per-frame functional groups"
    count = 0
    for item in items(seg, "PerFrameFunctionalGroupsSequence", frames, what):
        count += 1
        yield item
    if count == 0:
        yield from [None] * frames
    elif count != frames:
        raise LabelError(f"the SEG has {frames} frames but {count} per-frame functional groups")


def _attribute(groups: dict[str, Any], group: str, attribute: str) -> Any:
    item = groups[group]
    return item[attribute].value if item is not None and attribute in item else None


def _numbers(value: Any, count: int, what: str) -> np.ndarray:
    try:
        numbers = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        numbers = np.empty(0)
    if numbers.size != count or not np.isfinite(numbers).all():
        raise GeometryMismatch(f"{what} is not {count} finite numbers")
    return numbers


def _place(
    f: int,
    groups: dict[str, Any],
    grid: Grid,
    frame_size: tuple[int, int],
    notes: list[str] | None,
) -> _Placement | None:
    """Frame ``f``'s place on the grid, or None when no pixel of it can land there."""
    position = _attribute(groups, "PlanePositionSequence", "ImagePositionPatient")
    orientation = _attribute(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = _attribute(groups, "PixelMeasuresSequence", "PixelSpacing")
    if position is None or orientation is None:
        raise GeometryMismatch(f"SEG frame {f} has no plane position or orientation")
    position = _numbers(position, 3, f"SEG frame {f}'s ImagePositionPatient")
    orientation = _numbers(orientation, 6, f"SEG frame {f}'s ImageOrientationPatient")
    direction = grid.direction_matrix
    if not (
        np.allclose(orientation[:3], direction[:, 0], atol=DIRECTION_TOLERANCE)
        and np.allclose(orientation[3:], direction[:, 1], atol=DIRECTION_TOLERANCE)
    ):
        raise GeometryMismatch(
            f"SEG frame {f} is oriented {list(orientation)}, the reference series "
            f"{list(direction[:, :2].T.ravel())}: resample it first"
        )
    if spacing is not None:
        pixel = _numbers(spacing, 2, f"SEG frame {f}'s PixelSpacing")
        if not np.allclose(pixel[::-1], grid.spacing[:2], rtol=SPACING_TOLERANCE):
            raise GeometryMismatch(
                f"SEG frame {f} has pixel spacing {list(pixel)}, the reference series "
                f"{list(grid.spacing[1::-1])}"
            )
    matrix, origin = grid.index_matrix()
    x0, y0, z = matrix @ (position - origin)
    if max(abs(x0), abs(y0), abs(z)) > 2**40:
        return _Placement(f, None)  # nowhere near the grid
    k, i0, j0 = (int(np.rint(v)) for v in (z, y0, x0))
    if max(abs(y0 - i0), abs(x0 - j0)) > INDEX_TOLERANCE:
        raise GeometryMismatch(
            f"SEG frame {f} starts at index ({x0:.2f}, {y0:.2f}) of the reference grid, "
            "between its voxels: resample it first"
        )
    if abs(z - k) > INDEX_TOLERANCE:
        note(notes, f"SEG frame {f} lies {abs(z - k):.2f} slices off slice {k}")
    depth, height, width = grid.shape
    if not 0 <= k < depth:
        return _Placement(f, None)
    # Pasted at its in-plane offset, clipped to the grid.
    r0, r1 = max(i0, 0), min(i0 + frame_size[0], height)
    c0, c1 = max(j0, 0), min(j0 + frame_size[1], width)
    if r0 >= r1 or c0 >= c1:
        return None
    return _Placement(
        f, k, slice(r0, r1), slice(c0, c1), slice(r0 - i0, r1 - i0), slice(c0 - j0, c1 - j0)
    )


def _frames(
    seg: pydicom.Dataset, placements: list[_Placement], notes: list[str] | None
) -> Iterator[tuple[_Placement, np.ndarray]]:
    """The placed frames' pixels, decoded one at a time; frames outside the grid are noted
    (when they hold anything) and skipped."""
    if not placements:
        return  # iter_pixels would decode every frame for no indices
    for placement, pixels in zip(
        placements, iter_pixels(seg, indices=[p.frame for p in placements]), strict=True
    ):
        if placement.k is None:
            if pixels.any():
                frame = placement.frame
                note(notes, f"SEG frame {frame} lies outside the reference series: skipped")
            continue
        yield placement, pixels[placement.source_rows, placement.source_cols]


def _segment_masks(
    seg: pydicom.Dataset,
    grid: Grid,
    kind: str,
    segments: dict[int, str],
    plan: _Plan,
    notes: list[str] | None,
) -> Iterator[LabelMask]:
    maximum = float(seg.get("MaximumFractionalValue", 255) or 255)
    if kind == "FRACTIONAL" and not maximum > 0:
        raise LabelError(f"MaximumFractionalValue {maximum} is not positive")
    produced = False
    for number in sorted(set(segments) | set(plan.placements)):
        name = segments.get(number, f"segment {number}")
        mask: np.ndarray | None = None
        for placement, pixels in _frames(seg, plan.placements.get(number, []), notes):
            if mask is None:
                mask = np.zeros(grid.shape, dtype=bool)
            binary = pixels.astype(float) / maximum >= 0.5 if kind == "FRACTIONAL" else pixels != 0
            mask[placement.k, placement.rows, placement.cols] |= binary
        if mask is not None and mask.any():
            produced = True
            yield LabelMask(name, number, mask)
        else:
            note(notes, f"segment {number} {name!r} is empty on this series: skipped")
        mask = None  # the caller has stored it: free it before the next segment
    if not produced:
        raise EmptyLabelsError("no segment of the SEG covers a voxel of the reference series")


def _labelmap_masks(
    seg: pydicom.Dataset,
    grid: Grid,
    segments: dict[int, str],
    plan: _Plan,
    notes: list[str] | None,
) -> Iterator[LabelMask]:
    """A LABELMAP's frames hold segment numbers: decoded once into one label volume, then each
    declared segment is the voxels of its number."""
    dtype = np.uint8 if int(seg.get("BitsAllocated", 8)) <= 8 else np.uint16
    volume = np.zeros(grid.shape, dtype=dtype)
    for placement, pixels in _frames(seg, plan.placements.get(0, []), notes):
        region = volume[placement.k, placement.rows, placement.cols]
        if np.any((region != 0) & (pixels != 0) & (region != pixels)):
            raise LabelError(
                f"SEG frame {placement.frame} gives other labels than an earlier frame to "
                f"voxels of slice {placement.k}: a label map holds one label per voxel"
            )
        np.copyto(region, pixels.astype(dtype, copy=False), where=pixels != 0)
    present = np.zeros(np.iinfo(dtype).max + 1, dtype=np.int64)
    for plane in volume:  # slice by slice: bincount widens what it counts to 64 bits
        present += np.bincount(plane.ravel(), minlength=present.size)
    undeclared = [v for v in np.flatnonzero(present[1:]) + 1 if int(v) not in segments]
    if undeclared:
        note(notes, f"label values {[int(v) for v in undeclared[:20]]} are no declared segment")
    produced = False
    for number in sorted(segments):
        name = segments[number]
        if 0 < number < present.size and present[number]:
            produced = True
            yield LabelMask(name, number, volume == number)
        else:
            note(notes, f"segment {number} {name!r} is empty on this series: skipped")
    if not produced:
        raise EmptyLabelsError("no segment of the SEG covers a voxel of the reference series")


class _References(ItemBudget):
    """Referenced-image lists, read item by item, within ``limits.max_references`` in all."""

    def __init__(self, limits: LabelLimits) -> None:
        super().__init__(
            limits.max_references,
            f"the SEG lists more than {limits.max_references} referenced images",
        )

    def listed(self, seg: pydicom.Dataset) -> set[str]:
        uids: set[str] = set()
        for series in self.items(seg, "ReferencedSeriesSequence"):
            uids |= self.images(self.items(series, "ReferencedInstanceSequence"))
        return uids

    def sources(self, frame: pydicom.Dataset) -> set[str]:
        uids: set[str] = set()
        for derivation in self.items(frame, "DerivationImageSequence"):
            uids |= self.images(self.items(derivation, "SourceImageSequence"))
        return uids
