"""Decoding a sorted series into one SimpleITK volume of grey values.

Pixel data is decoded by pydicom's handlers (the pylibjpeg plugins or GDCM): JPEG baseline and
lossless, JPEG-LS, JPEG 2000, RLE, deflate, big endian. Grey images get their modality LUT
(RescaleSlope / RescaleIntercept, per frame for enhanced objects, or a Modality LUT Sequence),
so CT voxels are Hounsfield units. Colour images (RGB, YBR_*, PALETTE COLOR) become grey
luminance, ``round(0.299 R + 0.587 G + 0.114 B)`` (ITU-R BT.601, the Y of YBR_FULL), because
every mask and prompt works on one grey value per voxel; a series whose every instance is colour
also keeps its RGB values (``SeriesScan.colour``) for the models that take colour, within the
voxel cap counting 3 values a voxel. MONOCHROME1 values are kept as stored (a warning says so).
The result is int16 when every value is an integer that fits, else float32.
"""

import warnings
from typing import NamedTuple

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut

from annotator.core.redact import without_paths
from annotator.imaging.colour import COLOUR_VALUES, LUMA, colour_image
from annotator.imaging.dicom.geometry import functional_item
from annotator.imaging.dicom.types import DEFAULT_LIMITS, DicomInstance, Limits, SeriesScan


class Decoded(NamedTuple):
    """One instance's frames: grey values (modality LUT applied), its PhotometricInterpretation,
    and for colour images the (frames, rows, columns, 3) RGB values as decoded (else None)."""

    grey: np.ndarray
    photometric: str
    colour: np.ndarray | None


def _grey(ds: Dataset, pixels: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames, rows, columns) float32 grey values with the modality LUT applied, and the RGB
    values of a colour image (None for grey)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    colour = int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR"
    if frames == 1:
        pixels = pixels[np.newaxis]
    if colour:
        # pydicom already returns YBR_FULL / YBR_FULL_422 and JPEG's YBR as RGB (as_rgb=True).
        return np.rint(pixels.astype(np.float32) @ LUMA), pixels
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        out = pixels.astype(np.float32)
        for i in range(frames):
            transform = functional_item(ds, i, "PixelValueTransformationSequence")
            if transform is not None:
                slope = float(transform.get("RescaleSlope", 1) or 1)
                intercept = float(transform.get("RescaleIntercept", 0) or 0)
                out[i] = out[i] * slope + intercept
        return out, None
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32), None


def decode_instance(instance: DicomInstance) -> Decoded:
    """The instance's frames as (frames, rows, columns) float32 grey values, its
    PhotometricInterpretation, and its RGB values if it is colour; raises if the pixel data
    cannot be decoded."""
    with warnings.catch_warnings():
        # Header quirks were seen when scanning; decoding only cares about the pixels.
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(instance.path, force=False)
        pixels = ds.pixel_array
    grey, colour = _grey(ds, pixels, instance.number_of_frames)
    expected = (instance.number_of_frames, instance.rows, instance.columns)
    if grey.shape != expected:
        raise ValueError(f"decoded to shape {grey.shape}, expected {expected}")
    if colour is not None and colour.shape != (*expected, 3):
        raise ValueError(f"decoded to colour shape {colour.shape}, expected {(*expected, 3)}")
    return Decoded(grey, str(ds.get("PhotometricInterpretation", "")), colour)


def _reason(instance: DicomInstance, exc: Exception) -> str:
    syntax = pydicom.uid.UID(instance.transfer_syntax_uid).name or instance.transfer_syntax_uid
    text = without_paths(str(exc), {str(instance.path): instance.source}).strip()
    # pydicom lists each plugin's failure on its own line: keep them all, on one line.
    message = "; ".join(line.strip() for line in text.splitlines()) or type(exc).__name__
    if "less than expected" in message or "end of file" in message.lower():
        return f"truncated pixel data ({syntax}): {message}"
    return f"pixel data could not be decoded ({syntax}): {message}"


def build_volume(series: SeriesScan, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """Decode every instance into ``series.image``; returns {SOPInstanceUID: reason} of failures.

    Any failure rejects the whole series (``series.error``): never half a volume. The volume's
    size is checked against ``limits`` before it is allocated; NaN or infinite grey values
    (float pixel data, a NaN rescale) fail their instance. A series whose every instance is
    colour also gets ``series.colour``, its RGB values, when 3 values a voxel are within the
    cap (else a warning says the series is kept grey only).
    """
    geometry = series.geometry
    assert geometry is not None, "assemble_series first"
    first = series.instances[0]
    shape = (series.number_of_slices, first.rows, first.columns)
    if shape[0] * shape[1] * shape[2] > limits.max_voxels:
        series.error = f"too large: {shape} voxels (limit {limits.max_voxels})"
        return {}
    volume = np.empty(shape, dtype=np.float32)
    colour: np.ndarray | None = None
    colour_fits = COLOUR_VALUES * shape[0] * shape[1] * shape[2] <= limits.max_voxels
    all_colour = True
    failures: dict[str, str] = {}
    monochrome1 = False
    for instance in series.instances:
        try:
            frames, photometric, rgb = decode_instance(instance)
        except Exception as exc:  # decoders raise many types for corrupt or unsupported data
            failures[instance.sop_instance_uid] = _reason(instance, exc)
            continue
        bad = int(np.count_nonzero(~np.isfinite(frames)))
        if bad:
            failures[instance.sop_instance_uid] = (
                f"{bad} NaN or infinite grey value(s) (float pixel data or the modality LUT)"
            )
            continue
        volume[instance.slice_indices] = frames
        monochrome1 = monochrome1 or photometric == "MONOCHROME1"
        all_colour = all_colour and rgb is not None
        if rgb is not None and all_colour and colour_fits:
            colour = _colour_store(colour, rgb.dtype, shape)
            colour[instance.slice_indices] = rgb
    if failures:
        uid, reason = next(iter(failures.items()))
        source = next(i.source for i in series.instances if i.sop_instance_uid == uid)
        series.error = (
            f"{len(failures)} of {len(series.instances)} instances could not be decoded "
            f"(first: {source}: {reason})"
        )
        return failures
    if monochrome1:
        series.warnings.append("MONOCHROME1: values kept as stored (high values display dark)")
    series.image = _to_image(volume)
    series.image.SetOrigin(geometry.origin)
    series.image.SetSpacing(geometry.spacing)
    series.image.SetDirection(geometry.direction)
    if colour is not None and all_colour:
        series.colour = colour_image(colour, series.image)
    elif all_colour and not colour_fits:
        series.warnings.append(
            f"colour kept as grey only: {shape} voxels of 3 values are over the limit of "
            f"{limits.max_voxels} values"
        )
    return {}


def _colour_store(
    colour: np.ndarray | None, dtype: np.dtype, shape: tuple[int, int, int]
) -> np.ndarray:
    """The (z, y, x, 3) array the series' RGB values go into: of the first instance's type in
    native byte order (as SimpleITK takes it), widened if a later instance needs more."""
    dtype = dtype.newbyteorder("=")
    if colour is not None and np.can_cast(dtype, colour.dtype):
        return colour
    wider = np.zeros(
        (*shape, 3), dtype=dtype if colour is None else np.promote_types(colour.dtype, dtype)
    )
    if colour is not None:
        wider[...] = colour
    return wider


def _to_image(volume: np.ndarray) -> sitk.Image:
    low, high = (float(volume.min()), float(volume.max())) if volume.size else (0.0, 0.0)
    if low >= -32768 and high <= 32767 and bool(np.all(np.rint(volume) == volume)):
        return sitk.GetImageFromArray(volume.astype(np.int16))
    return sitk.GetImageFromArray(volume)
