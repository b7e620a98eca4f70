"""Synthetic CT-like phantoms with known lesions, for tests, demos and benchmarks.

The phantom is deliberately not a trivial two-level image: it has air, fat, soft tissue, lungs,
bone, a liver, partial-volume blur and correlated noise, so a segmenter that passes on it has
to cope with real-looking neighbours and contrast, not just a bright disc on black.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

__all__ = ["Phantom", "make_ct_phantom", "to_sitk", "write_phantom"]

AIR_HU = -1000.0
FAT_HU = -100.0
SOFT_TISSUE_HU = 40.0
LUNG_HU = -850.0
BONE_HU = 700.0
LIVER_HU = 60.0


@dataclass(eq=False)
class Phantom:
    """``image``: (z, y, x) int16 HU. ``spacing`` / ``origin``: mm, (x, y, z) as in SimpleITK.

    ``lesion_masks``: one bool (z, y, x) mask per lesion; ``lesion_kinds``: "liver" (hypodense
    lesion in the liver) or "lung" (soft-tissue nodule in a lung), in the same order.
    """

    image: npt.NDArray[np.int16]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    lesion_masks: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    lesion_kinds: list[str] = field(default_factory=list)


def _ellipsoid(
    grid: tuple[npt.NDArray[np.float32], ...],
    center: tuple[float, float, float],
    semi_axes: tuple[float, float, float],
) -> npt.NDArray[np.bool_]:
    """Voxels whose centres lie inside an axis-aligned ellipsoid; all in mm, (x, y, z) order."""
    zz, yy, xx = grid
    cx, cy, cz = center
    ax, ay, az = semi_axes
    inside = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 + ((zz - cz) / az) ** 2 <= 1.0
    return np.asarray(inside, dtype=bool)


def _place_lesion(
    rng: np.random.Generator,
    organ: npt.NDArray[np.bool_],
    grid: tuple[npt.NDArray[np.float32], ...],
    sampling_zyx: tuple[float, float, float],
    taken: npt.NDArray[np.bool_],
    radius_mm: float,
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """Pick a centre and semi-axes so that the lesion sits inside ``organ`` and clear of others.

    Shrinks the lesion (never below 4 mm) when the organ has no room for it.
    """
    # Distance to anything that is not free organ, or to the volume's edge: the lesion keeps
    # 2 mm of organ around it so that its reference mask is a whole ellipsoid. The distance
    # map is computed on a grid thinned in-plane (the slowest step otherwise) and the margin
    # grows by the thinning's error.
    stride = max(1, organ.shape[1] // 96)
    free = np.pad((organ & ~taken)[:, ::stride, ::stride], 1)
    sz, sy, sx = sampling_zyx
    depth = ndimage.distance_transform_edt(free, sampling=(sz, sy * stride, sx * stride))
    depth = depth[1:-1, 1:-1, 1:-1]
    slack = 2.0 + stride * max(sx, sy)
    zz, yy, xx = grid
    radius = radius_mm
    while radius >= 4.0:
        semi = tuple(float(radius * f) for f in rng.uniform(0.8, 1.2, size=3))
        candidates = np.flatnonzero(depth.ravel() >= max(semi) + slack)
        if candidates.size:
            zi, yi, xi = np.unravel_index(int(rng.choice(candidates)), depth.shape)
            yi, xi = yi * stride, xi * stride
            center = (float(xx[0, 0, xi]), float(yy[0, yi, 0]), float(zz[zi, 0, 0]))
            return center, (semi[0], semi[1], semi[2])
        radius *= 0.85
    return None


def make_ct_phantom(
    seed: int,
    shape: tuple[int, int, int] = (48, 192, 192),
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
    n_lesions: int = 3,
) -> Phantom:
    """A deterministic synthetic chest/abdomen CT in HU with ``n_lesions`` known lesions.

    ``shape`` is (z, y, x), ``spacing`` (x, y, z) in mm. Lesions alternate between hypodense
    liver lesions (10-20 HU in a 60 HU liver) and soft-tissue nodules (25-40 HU) in the lungs,
    radius 4-15 mm, as long as the organs have room for them.
    """
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    sx, sy, sz = spacing
    # mm coordinates of voxel centres, centred on the volume; sparse grids keep memory low.
    zz, yy, xx = np.meshgrid(
        ((np.arange(depth) - (depth - 1) / 2) * sz).astype(np.float32),
        ((np.arange(height) - (height - 1) / 2) * sy).astype(np.float32),
        ((np.arange(width) - (width - 1) / 2) * sx).astype(np.float32),
        indexing="ij",
        sparse=True,
    )
    grid = (zz, yy, xx)
    half_x, half_y, half_z = width * sx / 2, height * sy / 2, depth * sz / 2

    image = np.full(shape, AIR_HU, dtype=np.float32)
    body_a = half_x * 0.88 * rng.uniform(0.95, 1.05)
    body_b = half_y * 0.72 * rng.uniform(0.95, 1.05)
    body = np.broadcast_to((xx / body_a) ** 2 + (yy / body_b) ** 2 <= 1.0, shape)
    image[body] = FAT_HU
    fat = rng.uniform(3.0, 8.0)
    inner = np.broadcast_to((xx / (body_a - fat)) ** 2 + (yy / (body_b - fat)) ** 2 <= 1.0, shape)
    image[inner] = SOFT_TISSUE_HU

    lung_axes = (body_a * 0.33, body_b * 0.6, half_z * 0.75)
    lungs = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        center = (side * body_a * 0.45, -body_b * 0.12, half_z * 0.35)
        lungs |= _ellipsoid(grid, center, lung_axes)
    liver = _ellipsoid(
        grid,
        (-body_a * 0.3, body_b * 0.05, -half_z * 0.3),
        (body_a * 0.45, body_b * 0.6, half_z * 0.7),
    )
    liver &= ~lungs & inner
    lungs &= inner
    spine = np.broadcast_to(xx**2 + (yy - body_b * 0.7) ** 2 <= (body_b * 0.2) ** 2, shape)
    image[liver] = LIVER_HU
    image[lungs] = LUNG_HU
    image[spine & inner] = BONE_HU
    liver &= ~spine
    lungs &= ~spine

    sampling_zyx = (sz, sy, sx)
    taken = np.zeros(shape, dtype=bool)
    masks: list[npt.NDArray[np.bool_]] = []
    kinds: list[str] = []
    kind = "liver" if rng.random() < 0.5 else "lung"
    for _ in range(n_lesions):
        radius = float(rng.uniform(4.0, 15.0))
        placed = None
        for attempt in (kind, "lung" if kind == "liver" else "liver"):
            organ = liver if attempt == "liver" else lungs
            placed = _place_lesion(rng, organ, grid, sampling_zyx, taken, radius)
            if placed is not None:
                kind = attempt
                break
        if placed is None:
            break
        center, semi = placed
        mask = _ellipsoid(grid, center, semi)
        value = rng.uniform(10.0, 20.0) if kind == "liver" else rng.uniform(25.0, 40.0)
        image[mask] = value
        masks.append(mask)
        kinds.append(kind)
        # Keep later lesions 3 mm clear of this one so that every mask is one component.
        taken |= ndimage.binary_dilation(
            mask, structure=np.ones((3, 3, 3), bool), iterations=max(1, round(3.0 / min(spacing)))
        )
        kind = "lung" if kind == "liver" else "liver"

    # Partial-volume blur, mostly in-plane like a reconstruction kernel, then correlated noise.
    image = ndimage.gaussian_filter(image, sigma=(0.4, 0.7, 0.7))
    noise = ndimage.gaussian_filter(
        rng.standard_normal(shape).astype(np.float32), sigma=(0.0, 0.7, 0.7)
    )
    noise *= float(rng.uniform(10.0, 15.0)) / float(noise.std())
    image += noise
    out = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    origin = (-half_x + sx / 2, -half_y + sy / 2, -half_z + sz / 2)
    return Phantom(
        image=out, spacing=spacing, origin=origin, lesion_masks=masks, lesion_kinds=kinds
    )


def _place(image: Any, phantom: Phantom) -> None:
    # Typed as Any: SimpleITK's methods carry no annotations, which strict mypy would flag.
    image.SetSpacing(phantom.spacing)
    image.SetOrigin(phantom.origin)


def to_sitk(phantom: Phantom) -> sitk.Image:
    """The phantom's image as a SimpleITK image with its spacing and origin."""
    image = sitk.GetImageFromArray(phantom.image)
    _place(image, phantom)
    return image


def _labels(phantom: Phantom) -> sitk.Image:
    labels = np.zeros(phantom.image.shape, dtype=np.uint8)
    for index, mask in enumerate(phantom.lesion_masks, start=1):
        labels[mask] = index
    image = sitk.GetImageFromArray(labels)
    _place(image, phantom)
    return image


def write_phantom(phantom: Phantom, path: str | Path, label_path: str | Path | None = None) -> None:
    """Write the image as NIfTI (use a ``.nii.gz`` name); optionally the lesion label map too
    (lesion i, counted from 1, has label i)."""
    sitk.WriteImage(to_sitk(phantom), str(path), useCompression=True)
    if label_path is not None:
        sitk.WriteImage(_labels(phantom), str(label_path), useCompression=True)
