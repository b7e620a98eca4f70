"""MedSAM2 preprocessing: intensities to uint8, slices to normalised 512x512 RGB frames.

The published recipe (MEDSAM2.md), written so that a frame is only made when the image encoder
needs it: :class:`SliceFrames` is a lazy sequence (``len()`` and ``[i]`` are all SAM2's video
predictor uses), so a volume never exists as a float stack (3 MiB a slice).

1. Intensity bounds for the whole volume (:func:`..intensity.intensity_mapping`, shared with
   LiteMedSAM): the CT window, else the 0.5 and 99.5 percentiles of the non-zero voxels.
2. Per slice: clip to the bounds, scale to 0..255, uint8; resize to 512x512 (PIL, bicubic, the
   default of the reference's ``Image.resize``) and repeat as RGB; divide by 255 and normalise
   with the ImageNet mean and std in float32, as sam2's own ``load_video_frames`` does.

No torch (nor PIL) at import time: they are imported when a frame is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from ..intensity import IntensityMapping, intensity_mapping, volume_digest

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_SIZE",
    "IntensityMapping",
    "SliceFrames",
    "intensity_mapping",
    "volume_digest",
]

MODEL_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frame_from_slice(
    image: npt.NDArray[Any], mapping: IntensityMapping, size: int = MODEL_SIZE
) -> npt.NDArray[np.float32]:
    """One slice as the model's (3, size, size) float32 input."""
    from PIL import Image

    grey = Image.fromarray(mapping.to_uint8(image), mode="L")
    resized = np.asarray(grey.resize((size, size), Image.Resampling.BICUBIC))
    scaled = (resized / 255.0).astype(np.float32)
    frame = np.empty((3, size, size), dtype=np.float32)
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)):
        frame[channel] = (scaled - np.float32(mean)) / np.float32(std)
    return frame


class SliceFrames(Sequence["torch.Tensor"]):
    """The volume's slices as model frames, each normalised when it is asked for."""

    def __init__(
        self, array: npt.NDArray[Any], mapping: IntensityMapping, size: int = MODEL_SIZE
    ) -> None:
        self._array = array
        self._mapping = mapping
        self._size = size
        self.frames_made = 0

    def __len__(self) -> int:
        return int(self._array.shape[0])

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[torch.Tensor]: ...

    def __getitem__(self, index: int | slice) -> torch.Tensor | Sequence[torch.Tensor]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        import torch

        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} is outside 0..{len(self) - 1}")
        self.frames_made += 1
        return torch.from_numpy(frame_from_slice(self._array[index], self._mapping, self._size))
