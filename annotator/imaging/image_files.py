"""Reading one uploaded image file (NIfTI, NRRD, MetaImage): the one reader of volume, label-map
and mask uploads. Volume uploads may also be 2D pictures (PNG, JPEG) and colour (RGB or RGBA
pixels, see :mod:`annotator.imaging.colour`); label maps and masks are grey NIfTI, NRRD or
MetaImage.

Three rules, each checked before ITK reads a voxel:

- **Only the bytes the user sent are read.** NRRD (``data file``) and MetaImage
  (``ElementDataFile``) headers may name other files, which ITK would open on the server's disk;
  NIfTI's two-file variant (magic ``ni1``/``ni2``) reads a ``.img`` beside the header. All of
  these are refused: a header must carry its voxels itself. The ImageIO is the one the
  server-chosen suffix names, never one ITK guesses from the content.
- **Every declared size is checked before allocation:** the header is read alone (ITK's
  ``ReadImageInformation``), its voxel count must be within ``MAX_IMAGE_VOXELS`` (a colour
  image counts each channel: 3 values a voxel for RGB, 4 for RGBA), and the bytes it announces
  must be in the file (for deflate data: inflated and counted, output discarded; PNG and JPEG
  carry no other file and no byte count, and their decoders stop at the size checked).
- **The geometry and the voxels are numbers:** spacings as written must be finite and > 0 (ITK
  silently turns 0, NaN and infinity into 1), origins and directions finite, and no voxel NaN or
  infinite.

The server reads each NIfTI, NRRD or MetaImage header itself first
(:mod:`annotator.imaging.image_headers`: where the voxels are and how they are stored); what ITK
then reads from the header is checked against that, and the voxels scanned, here.

Errors are :class:`InvalidInput` naming the upload's field, with no server path in the text.
"""

import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import SimpleITK as sitk
from django.conf import settings

from annotator.core.errors import InvalidInput
from annotator.core.redact import without_paths
from annotator.imaging.image_headers import (
    Layout,
    Refuse,
    check_finite_numbers,
    check_spacings,
    metaimage_layout,
    nifti_layout,
    nrrd_layout,
)

# The server-chosen suffix picks the reader: ITK never guesses the format from the content.
IMAGE_IO = {
    ".nii.gz": "NiftiImageIO",
    ".nii": "NiftiImageIO",
    ".nrrd": "NrrdImageIO",
    ".nhdr": "NrrdImageIO",
    ".mha": "MetaImageIO",
    ".mhd": "MetaImageIO",
}
IMAGE_SUFFIXES = tuple(IMAGE_IO)
# 2D pictures, grey or colour, for volume uploads only (a JPEG is lossy: never a mask).
PICTURE_IO = {".png": "PNGImageIO", ".jpg": "JPEGImageIO", ".jpeg": "JPEGImageIO"}
PICTURE_SUFFIXES = tuple(PICTURE_IO)
# Components per pixel of a colour upload: RGB, or RGBA whose alpha is dropped.
COLOUR_COMPONENTS = (3, 4)
# Deflate cannot expand its input more than about 1032 times: a bound before inflating anything.
DEFLATE_MAX_RATIO = 1032
_BYTES_PER_COMPONENT = {
    sitk.sitkUInt8: 1,
    sitk.sitkInt8: 1,
    sitk.sitkUInt16: 2,
    sitk.sitkInt16: 2,
    sitk.sitkUInt32: 4,
    sitk.sitkInt32: 4,
    sitk.sitkUInt64: 8,
    sitk.sitkInt64: 8,
    sitk.sitkFloat32: 4,
    sitk.sitkFloat64: 8,
    sitk.sitkVectorUInt8: 1,
    sitk.sitkVectorInt8: 1,
    sitk.sitkVectorUInt16: 2,
    sitk.sitkVectorInt16: 2,
    sitk.sitkVectorUInt32: 4,
    sitk.sitkVectorInt32: 4,
    sitk.sitkVectorUInt64: 8,
    sitk.sitkVectorInt64: 8,
    sitk.sitkVectorFloat32: 4,
    sitk.sitkVectorFloat64: 8,
}
_FLOAT_PIXELS = (
    sitk.sitkFloat32,
    sitk.sitkFloat64,
    sitk.sitkVectorFloat32,
    sitk.sitkVectorFloat64,
)


def image_suffix(
    filename: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, *, field: str = "file"
) -> str:
    """The file's image suffix (3D image files only unless ``suffixes`` says otherwise)."""
    lower = filename.lower()
    for suffix in suffixes:
        if lower.endswith(suffix):
            return suffix
    raise InvalidInput(
        f"{filename!r} is not a supported image file; expected one of {', '.join(suffixes)}",
        fields={field: [f"unsupported file type; expected {', '.join(suffixes)}"]},
    )


def read_image(
    path: Path, filename: str, *, field: str = "file", colour: bool = False
) -> sitk.Image:
    """Read and check one 3D scalar image saved by the server at ``path`` (its suffix is the
    server's choice); 2D images become a volume of one slice. ``filename`` is the user's name
    for the file, ``field`` the request field that carried it (both for error messages).

    ``colour``: a volume upload, which may also be a PNG or JPEG picture and have RGB or RGBA
    pixels (the image returned then has 3 or 4 components:
    :func:`annotator.imaging.colour.split_colour` makes its grey volume)."""

    def refuse(reason: str) -> NoReturn:
        text = without_paths(reason, {str(path): filename, str(path.parent): ""})
        raise InvalidInput(
            f"{filename!r} could not be read as an image: {text}", fields={field: [text]}
        )

    readers = {**IMAGE_IO, **PICTURE_IO} if colour else IMAGE_IO
    suffix = image_suffix(path.name, tuple(readers))
    io = readers[suffix]
    if io == "NiftiImageIO":
        layout = nifti_layout(path, refuse)
    elif io == "NrrdImageIO":
        layout = nrrd_layout(path, refuse)
    elif io == "MetaImageIO":
        layout = metaimage_layout(path, refuse)
    else:
        layout = Layout(offset=0, encoding="picture")

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(io)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        refuse(_itk_reason(exc, {str(path): filename}))
    _check_information(reader, layout, path, refuse, colour)
    _check_geometry(reader, refuse)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        refuse(_itk_reason(exc, {str(path): filename}))
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    _check_finite(image, refuse)
    return image


def _itk_reason(exc: RuntimeError, known: dict[str, str]) -> str:
    """The useful sentence of an ITK exception (which leads with source file and line), the
    ``known`` paths shown as the user's names for them."""
    text = str(exc)
    found = re.findall(r"(?:ITK ERROR: [^:]*\): |sitk::ERROR: )(.+)", text)
    reason = found[-1] if found else (text.strip().splitlines()[-1:] or ["unreadable"])[0]
    return without_paths(reason.strip(), known) or "unreadable"


# --------------------------------------------------------------------------------------------
# What ITK read from the header, before it allocates


def _check_information(
    reader: sitk.ImageFileReader, layout: Layout, path: Path, refuse: Refuse, colour: bool
) -> None:
    dimension, components = reader.GetDimension(), reader.GetNumberOfComponents()
    if components != 1 and not (colour and components in COLOUR_COMPONENTS):
        expected = "grey values, RGB or RGBA" if colour else "grey values"
        refuse(f"it has {components} components per voxel; expected {expected}")
    if dimension not in (2, 3):
        refuse(f"it has {dimension} dimensions; expected 3")
    size = [int(n) for n in reader.GetSize()]
    voxels = math.prod(size)
    limit = settings.MAX_IMAGE_VOXELS
    if voxels * components > limit:
        announced = f"{' x '.join(map(str, size))} voxels"
        if components > 1:
            announced += f" of {components} values ({voxels * components} values)"
        refuse(f"its header announces {announced}, over the limit of {limit}")
    if layout.encoding == "picture":
        return  # compressed without a byte count; the decoder stops at the size checked
    per_component = _BYTES_PER_COMPONENT.get(reader.GetPixelID())
    per_voxel = layout.bytes_per_voxel or (per_component and per_component * components)
    if not per_voxel:
        refuse(
            f"voxels of type {sitk.GetPixelIDValueAsString(reader.GetPixelID())} are not supported"
        )
    needed = voxels * per_voxel
    file_size = path.stat().st_size
    present = max(file_size - layout.offset, 0)
    if layout.declared_bytes is not None and layout.declared_bytes > present:
        refuse(
            f"its header announces {layout.declared_bytes} bytes of compressed data; the file "
            f"holds {present}"
        )
    if layout.encoding == "deflate":
        # A .nii.gz is compressed whole, header included; NRRD and MetaImage after the header.
        whole = path.name.lower().endswith(".gz")
        start, skip = (0, layout.offset) if whole else (layout.offset, 0)
        if needed + skip > (file_size - start) * DEFLATE_MAX_RATIO:
            refuse(
                f"its header announces {needed} bytes of voxels, more than its "
                f"{file_size - start} compressed bytes can hold"
            )
        found = _scan_voxels(path, start, skip, needed, True, layout.float_dtype, refuse)
    elif layout.encoding == "raw" and layout.float_dtype:
        found = _scan_voxels(path, layout.offset, 0, needed, False, layout.float_dtype, refuse)
    else:
        found = present
    least = {"raw": needed, "deflate": needed, "hex": 2 * needed, "text": voxels * components}
    if found < least[layout.encoding]:
        refuse(
            f"it holds {found} bytes of the {least[layout.encoding]} its header announces: "
            "the file is truncated"
        )


def _stream(path: Path, start: int, deflate: bool, refuse: Refuse) -> Iterator[bytes]:
    """The file's bytes from ``start``, inflated when ``deflate`` (gzip or zlib, as MetaIO and
    teem accept; several gzip members may follow each other), in chunks of bounded size."""
    chunk = 1024 * 1024
    with open(path, "rb") as f:
        f.seek(start)
        if not deflate:
            while data := f.read(chunk):
                yield data
            return
        inflater = zlib.decompressobj(wbits=47)
        data = f.read(chunk)
        while data:
            try:
                out = inflater.decompress(data, 4 * chunk)
            except zlib.error:
                refuse("the compressed voxel data is corrupt")
            if out:
                yield out
            if inflater.eof:
                data = inflater.unused_data + f.read(chunk)
                if not data.startswith(b"\x1f\x8b"):  # trailing padding, not another member
                    return
                inflater = zlib.decompressobj(wbits=47)
            else:
                data = inflater.unconsumed_tail or f.read(chunk)


def _scan_voxels(
    path: Path,
    start: int,
    skip: int,
    needed: int,
    deflate: bool,
    float_dtype: str | None,
    refuse: Refuse,
) -> int:
    """How many of the ``needed`` voxel bytes (after ``skip`` bytes of the stream from
    ``start``) the file holds, reading no further; float voxels must all be finite."""
    found, pending = 0, b""
    for data in _stream(path, start, deflate, refuse):
        if skip:
            cut = min(skip, len(data))
            data, skip = data[cut:], skip - cut
        data = data[: needed - found]
        found += len(data)
        if float_dtype:
            data = pending + data
            whole = len(data) - len(data) % np.dtype(float_dtype).itemsize
            values = np.frombuffer(data[:whole], dtype=float_dtype)
            bad = int(np.count_nonzero(~np.isfinite(values)))
            if bad:
                refuse(f"it holds NaN or infinite voxel values ({bad} or more)")
            pending = data[whole:]
        if found >= needed:
            break
    return found


def _check_geometry(reader: sitk.ImageFileReader, refuse: Refuse) -> None:
    """The geometry as ITK made it from the header (a 2D image's third axis, added on reading,
    is spacing 1 at origin 0)."""
    check_spacings("the spacing", reader.GetSpacing(), refuse)
    check_finite_numbers("the origin", list(reader.GetOrigin()), refuse)
    check_finite_numbers("the direction", list(reader.GetDirection()), refuse)


# --------------------------------------------------------------------------------------------
# After reading


def _check_finite(image: sitk.Image, refuse: Refuse) -> None:
    """Refuse NaN or infinite voxels (float images), slice by slice to bound the memory used."""
    if image.GetPixelID() not in _FLOAT_PIXELS:
        return
    array = sitk.GetArrayViewFromImage(image)
    for index, plane in enumerate(array):
        bad = int(np.count_nonzero(~np.isfinite(plane)))
        if bad:
            refuse(f"it holds NaN or infinite voxel values ({bad} in slice {index} alone)")
