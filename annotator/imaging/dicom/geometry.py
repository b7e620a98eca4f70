"""Sorting a series' frames in space and checking that they form one regular volume.

Frames are ordered by their position along the slice normal (the cross product of the row and
column direction cosines, dotted with ImagePositionPatient), never by file name or
InstanceNumber. A series whose frames do not form one regular grid (a missing slice, uneven
spacing, two orientations or sizes, two frames at one position) is rejected as a whole: a
volume built from it would put voxels in the wrong place.
"""

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from annotator.imaging.dicom.types import DicomInstance, Geometry, SeriesScan

# A gap larger than this many typical spacings means slices are missing.
GAP_FACTOR = 1.5
# Spacings may differ from the typical one by this fraction (or POSITION_TOLERANCE_MM).
SPACING_TOLERANCE = 0.02
POSITION_TOLERANCE_MM = 0.01
ORIENTATION_TOLERANCE = 1e-3


def functional_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """An item of a functional group macro: the frame's own, else the shared one."""
    for groups_keyword, item_index in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if groups is not None and len(groups) > item_index:
            inner = groups[item_index].get(sequence)
            if inner is not None and len(inner) > 0:
                return inner[0]
    return None


def _counted(values: Sequence[object]) -> str:
    return ", ".join(f"{value} ({n} frames)" for value, n in Counter(values).most_common())


def _consistency_error(instances: Sequence[DicomInstance]) -> str:
    studies = {i.study.study_instance_uid for i in instances}
    if len(studies) > 1:
        return f"mixed series: its instances belong to {len(studies)} studies"
    sizes = [f"{i.rows}x{i.columns}" for i in instances for _ in i.frames]
    if len(set(sizes)) > 1:
        return f"mixed series: inconsistent image size (Rows x Columns): {_counted(sizes)}"
    spacings = [
        "none" if i.pixel_spacing is None else "\\".join(f"{v:g}" for v in i.pixel_spacing)
        for i in instances
        for _ in i.frames
    ]
    if len(set(spacings)) > 1:
        return f"mixed series: inconsistent PixelSpacing: {_counted(spacings)}"
    return ""


def assemble_series(instances: Sequence[DicomInstance]) -> SeriesScan:
    """Sort the instances' frames into volume order and check them; sets ``error`` if bad.

    Each instance's ``slice_indices`` say where its frames go; ``geometry`` is the volume's.
    """
    first = instances[0]
    series = SeriesScan(
        study=first.study,
        series_instance_uid=first.series_instance_uid,
        modality=first.modality,
        series_number=first.series_number,
        description=first.series_description,
        frame_of_reference_uid=first.frame_of_reference_uid,
        instances=list(instances),
    )
    broken = [i for i in instances if i.geometry_error]
    if broken:
        more = f" (and {len(broken) - 1} more object(s))" if len(broken) > 1 else ""
        series.error = f"unusable geometry in {broken[0].source}: {broken[0].geometry_error}{more}"
        return series
    series.error = _consistency_error(instances)
    if series.error:
        return series
    frames = [(inst, k, f) for inst in instances for k, f in enumerate(inst.frames)]
    located = [f for _, _, f in frames if f.position is not None and f.orientation is not None]
    if located and len(located) != len(frames):
        series.error = (
            f"mixed series: {len(located)} frames have a position and orientation, "
            f"{len(frames) - len(located)} have none"
        )
        return series
    row_spacing, column_spacing = first.pixel_spacing or (1.0, 1.0)
    if not located:
        if len(instances) > 1 and any(i.number_of_frames > 1 for i in instances):
            series.error = (
                f"mixed series: {len(instances)} objects without patient geometry, some of them "
                "multi-frame: no way to order their frames"
            )
            return series
        _stack_without_geometry(series, column_spacing, row_spacing)
        return series

    orientations = np.array([f.orientation for _, _, f in frames], dtype=float)
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        distinct = {tuple(np.round(o, 3)) for o in orientations}
        series.error = f"mixed series: {len(distinct)} different slice orientations"
        return series
    row, column = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, column)
    if not 0.99 < np.linalg.norm(normal) < 1.01:
        # Rows and columns must be orthogonal unit vectors, or positions cannot be compared.
        series.error = f"invalid ImageOrientationPatient {tuple(orientations[0])}"
        return series
    positions = np.array([f.position for _, _, f in frames], dtype=float)
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    for index, frame_number in enumerate(order):
        instance, k, _ = frames[frame_number]
        if not instance.slice_indices:
            instance.slice_indices = [0] * instance.number_of_frames
        instance.slice_indices[k] = index
    series.instances.sort(key=lambda i: (i.frame_offset, i.source))
    ordered = distances[order]
    slice_spacing = 1.0
    if len(ordered) > 1:
        series.error = _spacing_error(ordered, [frames[n] for n in order])
        if series.error:
            return series
        slice_spacing = float(ordered[-1] - ordered[0]) / (len(ordered) - 1)
    if not (np.isfinite(slice_spacing) and slice_spacing > 0):  # positions are finite: a guard
        series.error = f"invalid slice spacing {slice_spacing!r}"
        return series
    direction = np.column_stack([row, column, normal])  # axes x, y, z as columns
    series.geometry = Geometry(
        origin=(
            float(positions[order[0]][0]),
            float(positions[order[0]][1]),
            float(positions[order[0]][2]),
        ),
        spacing=(column_spacing, row_spacing, slice_spacing),
        direction=tuple(float(v) for v in direction.ravel()),
    )
    return series


def _spacing_error(ordered: np.ndarray, frames: Sequence[tuple[DicomInstance, int, object]]) -> str:
    gaps = np.diff(ordered)
    same = np.flatnonzero(gaps < POSITION_TOLERANCE_MM)
    if same.size:
        a, b = frames[same[0]][0], frames[same[0] + 1][0]
        return (
            f"{same.size + 1} frames share a position ({ordered[same[0]]:.2f} mm along the "
            f"normal), e.g. {a.source} ({a.sop_instance_uid}) and {b.source} "
            f"({b.sop_instance_uid}): duplicate slices with different SOPInstanceUIDs"
        )
    typical = float(np.median(gaps))
    missing = np.flatnonzero(gaps > GAP_FACTOR * typical)
    if missing.size:
        i = int(missing[0])
        return (
            f"missing slices: a gap of {gaps[i]:.2f} mm after {ordered[i]:.2f} mm along the "
            f"normal (typical spacing {typical:.2f} mm, about "
            f"{round(gaps[i] / typical) - 1} slice(s) missing; {missing.size} gap(s) in all)"
        )
    tolerance = max(SPACING_TOLERANCE * typical, POSITION_TOLERANCE_MM)
    if np.abs(gaps - typical).max() > tolerance:
        return (
            f"inconsistent slice spacing: from {gaps.min():.3f} to {gaps.max():.3f} mm "
            f"(typical {typical:.3f} mm)"
        )
    return ""


def _stack_without_geometry(series: SeriesScan, column_spacing: float, row_spacing: float) -> None:
    """Images with no patient geometry (secondary capture, ultrasound, cine): stack in order.

    With no positions the only order there is comes from the objects themselves: InstanceNumber
    then name, and each multi-frame object's frames in their stored order; slice spacing is 1.
    """
    series.instances.sort(
        key=lambda i: (i.instance_number is None, i.instance_number or 0, i.source)
    )
    index = 0
    for instance in series.instances:
        instance.slice_indices = list(range(index, index + instance.number_of_frames))
        index += instance.number_of_frames
    if len(series.instances) > 1:
        series.warnings.append(
            "no patient geometry: instances stacked by InstanceNumber, slice spacing 1"
        )
    series.geometry = Geometry(
        origin=(0.0, 0.0, 0.0),
        spacing=(column_spacing, row_spacing, 1.0),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    )
