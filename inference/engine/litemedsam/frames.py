"""LiteMedSAM's input and output frames: the authors' recipe (LITEMEDSAM.md).

* Intensities to uint8 for the whole volume (:func:`..intensity.intensity_mapping`): the CT
  window, else the 0.5/99.5 percentiles of the non-zero voxels; uint8 colour kept as it is.
* Per slice: grey repeated to 3 channels (colour used as it is), the longest side resized to
  256 (area averaging when shrinking, as ``cv2.INTER_AREA``; bilinear when enlarging), rounded
  back to uint8 as OpenCV returns it, min-max normalised to [0, 1], zero-padded at the bottom and
  right to 256 x 256.
* Boxes and points scale by ``256 / max(H, W)``; the decoder's 256 x 256 logits are cropped to
  the resized size, resized bilinearly to the slice and thresholded at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..intensity import IntensityMapping

if TYPE_CHECKING:
    import torch

__all__ = ["MODEL_SIZE", "Geometry", "slice_frame", "slice_uint8"]

MODEL_SIZE = 256


@dataclass(frozen=True)
class Geometry:
    """A slice of ``height`` x ``width`` in the model's frame: scale and resized size."""

    height: int
    width: int

    @property
    def scale(self) -> float:
        return MODEL_SIZE / max(self.height, self.width)

    @property
    def resized(self) -> tuple[int, int]:
        """(rows, columns) of the slice resized so that its longest side is 256."""
        return (
            max(1, math.floor(self.height * self.scale + 0.5)),
            max(1, math.floor(self.width * self.scale + 0.5)),
        )

    def box(self, box: tuple[float, float, float, float]) -> npt.NDArray[np.float32]:
        return np.asarray(box, dtype=np.float32) * np.float32(self.scale)

    def points(self, xy: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return np.asarray(xy, dtype=np.float32).reshape(-1, 2) * np.float32(self.scale)


def slice_uint8(image: npt.NDArray[Any], mapping: IntensityMapping) -> npt.NDArray[np.uint8]:
    """One slice as (H, W, 3) uint8: grey repeated, colour as it is."""
    mapped = mapping.to_uint8(image)
    if mapped.ndim == 2:
        return np.repeat(mapped[:, :, None], 3, axis=2)
    return np.ascontiguousarray(mapped)


def slice_frame(rgb: npt.NDArray[np.uint8]) -> torch.Tensor:
    """(H, W, 3) uint8 -> the encoder's (3, 256, 256) float32 input."""
    import torch
    import torch.nn.functional as F

    geometry = Geometry(int(rgb.shape[0]), int(rgb.shape[1]))
    rows, cols = geometry.resized
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(torch.float32)
    if (rows, cols) != (geometry.height, geometry.width):
        shrink = rows <= geometry.height and cols <= geometry.width
        if shrink:
            image = F.interpolate(image, size=(rows, cols), mode="area")
        else:
            image = F.interpolate(image, size=(rows, cols), mode="bilinear", align_corners=False)
        image = image.round().clamp(0, 255)
    low, high = image.min(), image.max()
    image = (image - low) / torch.clamp(high - low, min=1e-8)
    frame = torch.zeros((3, MODEL_SIZE, MODEL_SIZE), dtype=torch.float32)
    frame[:, :rows, :cols] = image[0]
    return frame
