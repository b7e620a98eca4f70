"""Agreement of two masks on one grid: surface distance and per-slice overlap.

Shared by the benchmarks and the effort measurement (model mask versus final mask). Spacing is
(x, y, z) in mm, the ITK order of :class:`~inference.engine.base.ImageVolume`; masks are (z, y, x).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .geometry import dice

__all__ = ["SLICE_FIX_DICE", "crop_to_union", "hd95", "slices_to_fix"]

# A slice whose 2D Dice against the reference is under this had to be re-contoured.
SLICE_FIX_DICE = 0.9


def crop_to_union(
    a: npt.NDArray[Any], b: npt.NDArray[Any], *, margin: int = 2
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Both masks cut to the bounding box of their union plus ``margin`` voxels (empty: 0-size)."""
    a = a.astype(bool, copy=False)
    b = b.astype(bool, copy=False)
    both = a | b
    if not both.any():
        return a[:0, :0, :0], b[:0, :0, :0]
    lo = [max(0, int(idx.min()) - margin) for idx in np.nonzero(both)]
    hi = [int(idx.max()) + margin + 1 for idx in np.nonzero(both)]
    window = tuple(slice(s, e) for s, e in zip(lo, hi, strict=True))
    return a[window], b[window]


def hd95(a: npt.NDArray[Any], b: npt.NDArray[Any], spacing: tuple[float, float, float]) -> float:
    """95th percentile of the symmetric surface distances, in mm; inf when one is empty."""
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return math.inf
    a, b = crop_to_union(a, b)
    sampling = (spacing[2], spacing[1], spacing[0])
    surface_a = a & ~ndimage.binary_erosion(a)
    surface_b = b & ~ndimage.binary_erosion(b)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=sampling)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=sampling)
    distances = np.concatenate([to_b[surface_a], to_a[surface_b]])
    return float(np.percentile(distances, 95))


def slices_to_fix(
    pred: npt.NDArray[Any],
    ref: npt.NDArray[Any],
    *,
    over: str = "union",
    threshold: float = SLICE_FIX_DICE,
) -> tuple[int, int]:
    """(slices whose 2D Dice of ``pred`` against ``ref`` is under ``threshold``, slices counted).

    ``over="union"`` counts the slices (axis 0) where either mask has voxels; ``over="ref"``
    only the slices of the reference, the ones a manual annotator would have contoured.
    """
    pred = pred.astype(bool, copy=False)
    ref = ref.astype(bool, copy=False)
    in_ref = ref.any(axis=(1, 2))
    counted = in_ref if over == "ref" else in_ref | pred.any(axis=(1, 2))
    fix = sum(dice(pred[z], ref[z]) < threshold for z in np.flatnonzero(counted))
    return int(fix), int(np.count_nonzero(counted))
