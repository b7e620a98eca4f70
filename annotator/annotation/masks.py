"""Mask payloads on the wire and on disk.

On the wire a mask is either ``raw-gzip`` (the viewer's format: z*y*x bytes, one per voxel, C
order over the volume's (z, y, x) array, gzip-compressed; any non-zero byte is foreground) or
``image`` (a NIfTI / NRRD / MetaImage label file on the volume's grid, as a script would send).
"""

import gzip
import tempfile
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from annotator.core.errors import InvalidInput
from annotator.imaging.image_files import image_suffix, read_image
from annotator.models import Volume

ENCODINGS = ("raw-gzip", "image")


def decode_raw_gzip(payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    expected = int(np.prod(shape))
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(payload, expected + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the mask is not valid gzip data: {exc}") from exc
    if len(raw) != expected or inflater.unconsumed_tail or not inflater.eof:
        raise InvalidInput(
            f"the mask must hold exactly {expected} voxels ({'x'.join(map(str, shape))}, z*y*x)"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape) != 0


def decode_image(payload: bytes, filename: str, volume: Volume) -> np.ndarray:
    """A label image on the volume's grid, read by the shared reader (field ``mask``)."""
    suffix = image_suffix(filename, field="mask")
    with tempfile.TemporaryDirectory(prefix="annotator-mask-") as tmp:
        path = Path(tmp) / f"mask{suffix}"
        path.write_bytes(payload)
        image = read_image(path, filename, field="mask")
    if list(image.GetSize()) != list(volume.size):
        raise InvalidInput(
            f"the mask's size {list(image.GetSize())} differs from the volume's {volume.size}",
            fields={"mask": ["size differs from the volume's"]},
        )
    if not np.allclose(image.GetSpacing(), volume.spacing, rtol=1e-3) or not np.allclose(
        image.GetOrigin(), volume.origin, atol=1e-2
    ):
        raise InvalidInput(
            "the mask's spacing or origin differs from the volume's",
            fields={"mask": ["spacing or origin differs from the volume's"]},
        )
    return sitk.GetArrayFromImage(image) != 0


def decode_mask(payload: bytes, *, encoding: str, filename: str, volume: Volume) -> np.ndarray:
    if encoding == "raw-gzip":
        return decode_raw_gzip(payload, volume.shape_zyx)
    if encoding == "image":
        return decode_image(payload, filename, volume)
    raise InvalidInput(f"unknown mask encoding {encoding!r}; expected one of {ENCODINGS}")


def encode_raw_gzip(mask: np.ndarray) -> bytes:
    return gzip.compress(np.ascontiguousarray(mask, dtype=np.uint8).tobytes(), compresslevel=1)


def to_image(labels: np.ndarray, volume: Volume) -> sitk.Image:
    """A label array on the volume's grid as a SimpleITK image carrying the volume's geometry
    (uint8, or uint16 where the labels are: more than 255 of them)."""
    dtype = np.uint16 if labels.dtype == np.uint16 else np.uint8
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=dtype))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    return image


def encode_nifti(mask: np.ndarray, volume: Volume) -> bytes:
    with tempfile.TemporaryDirectory(prefix="annotator-mask-") as tmp:
        path = Path(tmp) / "mask.nii.gz"
        sitk.WriteImage(to_image(mask, volume), str(path), useCompression=True)
        return path.read_bytes()
