"""Colour images: the grey volume every mask, prompt and view works on, and the RGB pixels kept
beside it for the models that take colour.

A colour series has two images on one grid: its luma, ``round(0.299 R + 0.587 G + 0.114 B)``
(ITU-R BT.601, as DICOM decoding and video import compute it), stored as the series' volume,
and its RGB values as decoded, stored as a compressed vector MetaImage (``colour.mha``,
``Volume.colour_storage_key``: NIfTI would drop the third axis of a one-slice vector image).
"""

import numpy as np
import SimpleITK as sitk

COLOUR_FILE = "colour.mha"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Values a colour voxel counts against ANNOTATOR_MAX_IMAGE_VOXELS: one per channel.
COLOUR_VALUES = 3


def luma(rgb: np.ndarray) -> np.ndarray:
    """The BT.601 luma of (..., 3) RGB values: rounded and of the same type for integers (the
    weights sum to 1, so it stays within the channels' range), float32 otherwise."""
    grey = rgb.astype(np.float32) @ LUMA
    if np.issubdtype(rgb.dtype, np.integer):
        return np.rint(grey).astype(rgb.dtype)
    return grey


def colour_image(rgb: np.ndarray, like: sitk.Image) -> sitk.Image:
    """(z, y, x, 3) RGB values as a vector image on the grid of ``like``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(rgb), isVector=True)
    image.CopyInformation(like)
    return image


def split_colour(image: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """A 3D image of 3 (RGB) or 4 (RGBA) components as (grey luma, RGB with alpha dropped),
    both on its grid."""
    rgb = sitk.GetArrayFromImage(image)[..., :3]
    grey = sitk.GetImageFromArray(luma(rgb))
    grey.CopyInformation(image)
    return grey, colour_image(rgb, grey)
