"""Voxel features and post-processing of the learned backend (see ``learned.py``).

Every feature is RELATIVE to the prompt, so that one model serves CT in HU, z-scored MR and
PET in SUV alike: intensities rescaled so that the ring around the box on the key slice is 0
and the box's core 1; positions in units of the box's half-size in mm.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .masks2d import SQUARE, BoolArray, FloatArray, box_mask, ellipse_in_box

__all__ = ["FEATURE_NAMES", "SCALES_MM", "postprocess", "sample_voxels", "voxel_features"]

# Physical smoothing scales, in mm.
SCALES_MM = (1.0, 2.5, 6.0)
FEATURE_NAMES: tuple[str, ...] = (
    *(f"intensity_s{s:g}" for s in (0.0, *SCALES_MM)),
    *(f"gradient_s{s:g}" for s in SCALES_MM),
    *(f"spread_s{s:g}" for s in SCALES_MM[1:]),
    "offset_x",
    "offset_y",
    "offset_z",
    "radius",
    "classical_distance",
)


def _relative_scale(
    key: FloatArray, box: tuple[int, int, int, int], data: FloatArray
) -> tuple[float, float]:
    """(ring level, core level - ring level) on the key slice; the difference is kept at 5 %
    of the crop's intensity range or more, so that a flat region does not blow up."""
    shape2d = key.shape
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    core = ellipse_in_box(shape2d, box, 0.5)
    near = box_mask(shape2d, box, 1 + max(3, math.ceil(0.2 * max(bw, bh))))
    ring = near & ~box_mask(shape2d, box, 1)
    if ring.sum() < 8:
        ring = box_mask(shape2d, box) & ~ellipse_in_box(shape2d, box, 0.9)
    if ring.sum() < 8:
        ring = np.ones(shape2d, dtype=bool)
    step = max(1, round((data.size / 200_000) ** (1 / 3)))
    lo, hi = (float(v) for v in np.percentile(data[::step, ::step, ::step], (0.5, 99.5)))
    spread = max(hi - lo, 1e-6)
    ring_level = float(np.median(key[ring]))
    contrast = float(np.median(key[core])) - ring_level
    if abs(contrast) < 0.05 * spread:
        contrast = math.copysign(0.05 * spread, contrast if contrast != 0 else 1.0)
    return ring_level, contrast


def _gradient(data: FloatArray, spacing: tuple[float, float, float]) -> list[FloatArray]:
    """``np.gradient`` along each axis, zero along an axis of one voxel (a one-slice range)."""
    return [
        np.gradient(data, step, axis=axis) if data.shape[axis] > 1 else np.zeros_like(data)
        for axis, step in enumerate(spacing)
    ]


def voxel_features(
    data: FloatArray,
    key: int,
    box: tuple[int, int, int, int],
    spacing: tuple[float, float, float],
    classical: BoolArray,
) -> FloatArray:
    """One row of :data:`FEATURE_NAMES` per voxel of the crop ``data`` (z, y, x), C order."""
    sx, sy, sz = spacing
    ring_level, contrast = _relative_scale(data[key], box, data)
    rel = (data - ring_level) * (1.0 / contrast)
    x0, y0, x1, y1 = box
    half_x = max((x1 - x0 + 1) * sx / 2, 1e-3)
    half_y = max((y1 - y0 + 1) * sy / 2, 1e-3)
    half_z = max(half_x, half_y)
    columns: list[FloatArray] = []
    light = ndimage.gaussian_filter(rel, sigma=(0.5 * min(1.0, sx / sz), 0.5, 0.5))
    columns.append(light)
    smoothed: list[FloatArray] = []
    for scale in SCALES_MM:
        sigma = (scale / sz, scale / sy, scale / sx)
        smooth = ndimage.gaussian_filter(rel, sigma=sigma, mode="nearest")
        smoothed.append(smooth)
        columns.append(smooth)
    for smooth in smoothed:
        gz, gy, gx = _gradient(smooth, (sz, sy, sx))
        # Per box half-size: the same edge scores the same in a 1 cm and a 10 cm lesion.
        columns.append(np.sqrt(gz * gz + gy * gy + gx * gx) * half_z)
    for scale, smooth in zip(SCALES_MM[1:], smoothed[1:], strict=True):
        sigma = (scale / sz, scale / sy, scale / sx)
        second = ndimage.gaussian_filter(rel * rel, sigma=sigma, mode="nearest")
        columns.append(np.sqrt(np.maximum(second - smooth * smooth, 0.0)))
    shape = data.shape
    zz, yy, xx = np.meshgrid(
        np.arange(shape[0], dtype=np.float32),
        np.arange(shape[1], dtype=np.float32),
        np.arange(shape[2], dtype=np.float32),
        indexing="ij",
    )
    ox = np.abs(xx - (x0 + x1) / 2) * (sx / half_x)
    oy = np.abs(yy - (y0 + y1) / 2) * (sy / half_y)
    oz = np.abs(zz - key) * (sz / half_z)
    radius = np.sqrt(ox * ox + oy * oy + oz * oz)
    columns.extend(np.asarray(c, dtype=np.float32) for c in (ox, oy, oz, radius))
    sampling = (sz, sy, sx)
    if classical.any():
        inside = ndimage.distance_transform_edt(classical, sampling=sampling)
        outside = ndimage.distance_transform_edt(~classical, sampling=sampling)
        signed = np.asarray(inside - outside, dtype=np.float32) / half_z
    else:
        signed = np.full(shape, -2.0, dtype=np.float32)
    columns.append(np.clip(signed, -3.0, 3.0))
    out = np.empty((data.size, len(columns)), dtype=np.float32)
    for i, column in enumerate(columns):
        out[:, i] = column.ravel()
    return out


def postprocess(candidate: BoolArray, key: int, box: tuple[int, int, int, int]) -> BoolArray:
    """Keep the 3D component(s) touching the box on the key slice, fill holes slice by slice
    and in 3D."""
    labels, count = ndimage.label(candidate, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return np.zeros_like(candidate)
    x0, y0, x1, y1 = box
    on_key = labels[key, y0 : y1 + 1, x0 : x1 + 1]
    hit = np.unique(on_key[on_key > 0])
    if hit.size == 0:
        return np.zeros_like(candidate)
    sizes = np.bincount(on_key.ravel(), minlength=count + 1)
    # The component that covers the most of the box: a neighbour grazing its corner is not it.
    best = int(np.argmax(np.where(np.arange(count + 1) > 0, sizes, -1)))
    mask = labels == best
    for z in range(mask.shape[0]):
        if mask[z].any():
            mask[z] = ndimage.binary_fill_holes(mask[z], structure=SQUARE)
    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


def sample_voxels(
    rng: np.random.Generator, reference: BoolArray, classical: BoolArray, count: int
) -> npt.NDArray[np.intp]:
    """Indices (into the raveled crop) to train on: half uniform, half on the boundaries of
    the reference and of the classical draft, where the decisions are made."""
    size = reference.size
    if size <= count:
        return np.arange(size)
    band = np.zeros(reference.shape, dtype=bool)
    for mask in (reference, classical):
        if mask.any():
            grown = ndimage.binary_dilation(mask, iterations=2)
            shrunk = ndimage.binary_erosion(mask, iterations=2)
            band |= grown & ~shrunk
    uniform = rng.choice(size, size=count // 2, replace=False)
    near = np.flatnonzero(band.ravel())
    if near.size > count - count // 2:
        near = rng.choice(near, size=count - count // 2, replace=False)
    return np.unique(np.concatenate([uniform, near]))
