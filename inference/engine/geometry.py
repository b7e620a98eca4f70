"""Mask geometry shared by the engine, the benchmarks and the import of real data."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .errors import InvalidInput

__all__ = ["connected_components", "dice", "key_slice_and_box"]


def key_slice_and_box(mask: npt.NDArray[Any]) -> tuple[int, tuple[int, int, int, int]]:
    """The slice (axis 0) where ``mask`` has its largest area, and the tight box on it.

    Returns ``(k, (x0, y0, x1, y1))`` with inclusive voxel indices, x = axis 2, y = axis 1,
    the same convention as :class:`~inference.engine.base.LesionPrompt`. Ties go to the
    lowest slice index. Raises :class:`InvalidInput` for a mask that is not 3D or is empty.
    """
    if mask.ndim != 3:
        raise InvalidInput(f"mask must be 3D (z, y, x), got shape {mask.shape}")
    binary = mask.astype(bool, copy=False)
    areas = binary.sum(axis=(1, 2))
    if not areas.any():
        raise InvalidInput("mask is empty: there is no lesion to put a box around")
    k = int(np.argmax(areas))
    rows = np.flatnonzero(binary[k].any(axis=1))
    cols = np.flatnonzero(binary[k].any(axis=0))
    return k, (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def dice(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Dice overlap of two masks of the same shape; 1.0 when both are empty."""
    if a.shape != b.shape:
        raise InvalidInput(f"masks differ in shape: {a.shape} vs {b.shape}")
    a = a.astype(bool, copy=False)
    b = b.astype(bool, copy=False)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def connected_components(
    mask: npt.NDArray[Any], *, min_voxels: int = 1
) -> list[npt.NDArray[np.bool_]]:
    """Split a mask into its 26-connected components, largest first."""
    labels, count = ndimage.label(mask.astype(bool, copy=False), structure=np.ones((3, 3, 3)))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    order = [int(i) for i in np.argsort(-sizes[1:], kind="stable") + 1]
    return [labels == i for i in order if sizes[i] >= min_voxels]
