"""Image operations behind the default backend: 2D masks, robust statistics, the envelope.

Small, pure functions on numpy arrays; kept apart so that ``default.py`` reads as the
algorithm and these as its vocabulary.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

CROSS = ndimage.generate_binary_structure(2, 1)
SQUARE = np.ones((3, 3), dtype=bool)


def disk(radius: int) -> BoolArray:
    r = max(0, int(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.asarray(xx**2 + yy**2 <= r * r + r, dtype=bool)


def ellipse_in_box(
    shape: tuple[int, int], box: tuple[int, int, int, int], scale: float
) -> BoolArray:
    """Pixels inside the ellipse inscribed in ``box`` shrunk by ``scale``; never empty."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax = max(scale * (x1 - x0 + 1) / 2, 0.5)
    ay = max(scale * (y1 - y0 + 1) / 2, 0.5)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    out = np.asarray(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0, dtype=bool)
    if not out.any():
        out[round(cy), round(cx)] = True
    return out


def box_mask(shape: tuple[int, int], box: tuple[int, int, int, int], grow: int = 0) -> BoolArray:
    x0, y0, x1, y1 = box
    out = np.zeros(shape, dtype=bool)
    out[max(0, y0 - grow) : y1 + grow + 1, max(0, x0 - grow) : x1 + grow + 1] = True
    return out


def keep_touching(candidate: BoolArray, anchor: BoolArray) -> BoolArray:
    """The 8-connected components of ``candidate`` that overlap ``anchor``."""
    labels, count = ndimage.label(candidate, structure=SQUARE)
    if count == 0:
        return np.zeros_like(candidate)
    hit = np.unique(labels[anchor & candidate])
    hit = hit[hit > 0]
    return np.asarray(np.isin(labels, hit), dtype=bool)


def largest_component(candidate: BoolArray) -> BoolArray:
    labels, count = ndimage.label(candidate, structure=SQUARE)
    if count == 0:
        return np.zeros_like(candidate)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)), dtype=bool)


def open_disk(mask: BoolArray, radius: float) -> BoolArray:
    """Binary opening with a disk, through distance transforms: as exact as a structuring
    element and much faster for large radii."""
    if not mask.any():
        return mask
    inner = ndimage.distance_transform_edt(mask) > radius
    if not inner.any():
        return np.zeros_like(mask)
    return np.asarray(ndimage.distance_transform_edt(~inner) <= radius, dtype=bool)


def robust_sigma(values: FloatArray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def otsu(values: FloatArray, bins: int = 128) -> float:
    """Otsu's threshold: the split of a histogram that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(hist * centers)
    mean_low = mass_low / np.maximum(weight_low, 1)
    mean_high = (mass_low[-1] - mass_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def pick_background(ring: FloatArray, lesion_level: float, noise: float) -> FloatArray:
    """The ring pixels that make up the lesion's background.

    A ring often crosses two tissues (brain and the air outside it, lung and chest wall). The
    background that the lesion must be told apart from is the one nearest in intensity to the
    lesion that still differs from it clearly: brain rather than air around a glioma, lung
    rather than the chest wall (as bright as the nodule) around a pleural nodule.
    """
    if ring.size < 16 or float(np.ptp(ring)) <= 0:
        return ring
    split = otsu(ring)
    low, high = ring[ring <= split], ring[ring > split]
    if min(low.size, high.size) < 0.15 * ring.size:
        return ring
    separation = float(np.median(high)) - float(np.median(low))
    if separation < max(3.0 * noise, 0.25 * abs(lesion_level - float(np.median(ring)))):
        return ring
    gaps = [abs(float(np.median(part)) - lesion_level) for part in (low, high)]
    # Tissue within 5 % of the intensity range of the lesion (chest wall around a nodule) is
    # no edge a threshold could find; it is left to the box and connectivity to exclude.
    distinct = [
        part
        for part, gap in zip((low, high), gaps, strict=True)
        if gap >= max(0.05, 0.15 * max(gaps))
    ]
    if not distinct:
        return ring
    return min(distinct, key=lambda part: abs(float(np.median(part)) - lesion_level))


def half_way(lesion: FloatArray, background: FloatArray) -> float:
    """Half-way between the two medians: where a blurred edge crosses 50 % of the step, so
    the boundary lands where it belongs whatever the blur; also the best single threshold
    between two equally noisy classes. (Weighting by the spreads was tried and lost: a
    background's spread measures its heterogeneity far more than its noise.)"""
    return (float(np.median(background)) + float(np.median(lesion))) / 2


class Envelope:
    """Where the lesion may be on a slice ``dz`` mm from the key slice: the box grown by the
    margin, shrinking like an ellipsoid's cross-section to nothing at ``reach`` mm."""

    def __init__(
        self, shape: tuple[int, int], box: tuple[int, int, int, int], margin: float, reach: float
    ):
        x0, y0, x1, y1 = box
        self.shape = shape
        self.cx, self.cy = (x0 + x1) / 2, (y0 + y1) / 2
        self.half_w = (x1 - x0 + 1) / 2 * (1 + margin) + 1
        self.half_h = (y1 - y0 + 1) / 2 * (1 + margin) + 1
        self.reach = max(reach, 1e-6)

    def window(self, dz: float, pad: int) -> tuple[slice, slice] | None:
        """The envelope at ``dz`` as a (rows, columns) window grown by ``pad``, or ``None``
        where the envelope has shrunk to nothing."""
        scale = math.sqrt(max(0.0, 1.0 - (dz / self.reach) ** 2))
        hw, hh = self.half_w * scale, self.half_h * scale
        c0, c1 = math.ceil(self.cx - hw), math.floor(self.cx + hw)
        r0, r1 = math.ceil(self.cy - hh), math.floor(self.cy + hh)
        if c1 < c0 or r1 < r0:
            return None
        return (
            slice(max(0, r0 - pad), min(self.shape[0], r1 + pad + 1)),
            slice(max(0, c0 - pad), min(self.shape[1], c1 + pad + 1)),
        )
