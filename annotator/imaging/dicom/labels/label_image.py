"""Label maps (NIfTI, NRRD, MetaImage): one mask per value, on the reference grid."""

from collections.abc import Iterator

import numpy as np
import SimpleITK as sitk

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
    TooLarge,
    note,
    points_to_index,
)


def check_same_grid(
    image: sitk.Image, reference: "sitk.Image | Grid", what: str = "label image"
) -> None:
    """Raise GeometryMismatch unless ``image`` has ``reference``'s size, spacing, origin and
    direction (origin within a tenth of a voxel)."""
    grid = Grid.of(reference)
    if image.GetSize() != grid.size:
        raise GeometryMismatch(
            f"the {what}'s size {list(image.GetSize())} differs from the reference series' "
            f"{list(grid.size)}"
        )
    spacing = np.asarray(grid.spacing)
    if not np.allclose(image.GetSpacing(), spacing, rtol=SPACING_TOLERANCE):
        raise GeometryMismatch(
            f"the {what}'s spacing {list(image.GetSpacing())} differs from the reference "
            f"series' {list(spacing)}"
        )
    if not np.allclose(image.GetDirection(), grid.direction, atol=DIRECTION_TOLERANCE):
        raise GeometryMismatch(
            f"the {what}'s direction {list(image.GetDirection())} differs from the reference "
            f"series' {list(grid.direction)} (a RAS/LPS or axis flip?)"
        )
    offset = points_to_index(np.asarray([image.GetOrigin()]), grid)[0]
    if np.abs(offset).max() > INDEX_TOLERANCE:
        raise GeometryMismatch(
            f"the {what}'s origin {list(image.GetOrigin())} is {list(np.round(offset, 2))} "
            f"voxels from the reference series' {list(grid.origin)}"
        )


def _same_lattice(image: sitk.Image, grid: Grid) -> bool:
    """True when ``image``'s voxel centres are exactly ``grid``'s, in another axis order or
    direction (a flipped or permuted copy of the grid, as some tools write NIfTI)."""
    size = np.asarray(image.GetSize(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    to_reference = grid.index_matrix()[0] @ (direction * np.asarray(image.GetSpacing()))
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
        grid,
    )
    if np.abs(corners - np.rint(corners)).max() > INDEX_TOLERANCE:
        return False
    mapped = np.sort(np.rint(corners), axis=0)
    reference_size = np.asarray(grid.size, dtype=float)
    return bool(
        np.array_equal(mapped[0], np.zeros(3))
        and np.array_equal(mapped[1], reference_size - 1)
        and np.array_equal(np.sort(size), np.sort(reference_size))
    )


def label_image_masks(
    label: sitk.Image,
    reference: "sitk.Image | Grid",
    names: dict[int, str] | None = None,
    *,
    notes: list[str] | None = None,
    limits: LabelLimits = DEFAULT_LIMITS,
) -> Iterator[LabelMask]:
    """One LabelMask per non-zero value of a label map on ``reference``'s grid.

    The label image must be on the reference grid (size, spacing, direction, origin within a
    tenth of a voxel), or be the same voxels in another axis order or direction (a flipped
    NIfTI): those are reordered exactly, never interpolated. Anything else is a GeometryMismatch.
    Checked here, values counted against ``limits.max_labels``; the masks come from the
    returned iterator, one at a time.
    """
    grid = Grid.of(reference)
    if label.GetNumberOfComponentsPerPixel() != 1:
        raise LabelError("the label image has several components per voxel")
    if label.GetDimension() == 2 and grid.size[2] == 1:
        label = sitk.JoinSeries(label)
    if label.GetDirection() != grid.direction and _same_lattice(label, grid):
        note(notes, "the label image is the reference grid in another axis order: reordered")
        label = sitk.Resample(
            label,
            list(grid.size),
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            list(grid.origin),
            list(grid.spacing),
            list(grid.direction),
            0,
            label.GetPixelID(),
        )
    check_same_grid(label, grid)
    array = sitk.GetArrayFromImage(label)
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.rint(array)):
            raise LabelError("the label image holds non-integer values: not a label map")
        array = array.astype(np.int64)
    values = [int(v) for v in np.unique(array) if v != 0]
    if not values:
        raise EmptyLabelsError("the label image holds no label (every voxel is 0)")
    if len(values) > limits.max_labels:
        raise TooLarge(
            f"the label image holds {len(values)} labels, more than the {limits.max_labels} "
            "a label object may hold (ANNOTATOR_MAX_LABELS)"
        )
    names = names or {}
    return (LabelMask(names.get(v, f"label {v}"), v, array == v) for v in values)
