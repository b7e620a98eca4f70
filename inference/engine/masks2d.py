"""2D masks on one slice: disks, ellipses and boxes, connected components, openings, and the
propagation envelope; the array types the classical draft works with.

Small, pure functions on numpy arrays; kept apart so that ``classical.py`` reads as the
algorithm and these (with :mod:`.robust_stats`) as its vocabulary.
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
