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

Errors are :class:`InvalidInput` naming the upload's field, with no server path in the text.
"""

import gzip
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import SimpleITK as sitk
from django.conf import settings

from annotator.core.errors import InvalidInput
from annotator.core.redact import without_paths

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
# A text header (NRRD, MetaImage) must end within this many bytes.
HEADER_LIMIT = 1024 * 1024
# Deflate cannot expand its input more than about 1032 times: a bound before inflating anything.
DEFLATE_MAX_RATIO = 1032
# MetaIO accepts exactly these spellings of "the data follows the header in this file".
_METAIMAGE_LOCAL = ("LOCAL", "Local", "local")
_NRRD_ENCODINGS = {"raw": "raw", "gzip": "deflate", "gz": "deflate", "hex": "hex"}
_NRRD_ENCODINGS.update({"ascii": "text", "text": "text", "txt": "text"})
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

Refuse = Callable[[str], NoReturn]


@dataclass(frozen=True)
class _Layout:
    """Where a file's voxel data is and how it is stored, as its header says."""

    offset: int  # the first byte of the voxel data
    encoding: str  # "raw", "deflate", "text", "hex", or "picture" (PNG, JPEG: not counted)
    # Every component of a voxel as stored (NIfTI: before ITK's rescale); None: ITK's
    bytes_per_voxel: int | None = None
    declared_bytes: int | None = None  # bytes the reader allocates for the compressed data
    # NIfTI float voxels as stored ("<f4", ">f8"): the NIfTI library silently reads NaN and
    # infinity as 0, so they are looked for in the file itself.
    float_dtype: str | None = None


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
        layout = _nifti_layout(path, refuse)
    elif io == "NrrdImageIO":
        layout = _nrrd_layout(path, refuse)
    elif io == "MetaImageIO":
        layout = _metaimage_layout(path, refuse)
    else:
        layout = _Layout(offset=0, encoding="picture")

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
# Headers, read by the server before ITK sees the file


def _text_header(path: Path, end: Callable[[bytes], bool], refuse: Refuse) -> tuple[list, int]:
    """The header's lines (bytes, line ends stripped) up to and including the line for which
    ``end`` is true, and the offset just past it; refused if none within HEADER_LIMIT."""
    with open(path, "rb") as f:
        head = f.read(HEADER_LIMIT)
    lines, offset = [], 0
    while offset < len(head):
        newline = head.find(b"\n", offset)
        if newline < 0:
            break
        line = head[offset:newline].rstrip(b"\r")
        offset = newline + 1
        lines.append(line)
        if end(line):
            return lines, offset
    refuse("the header has no end within its first 1 MiB (or the file holds no voxel data)")


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in re.split(r"[\s,()]+", text) if v]
    except ValueError:
        return [math.nan]


def _check_spacings(what: str, values: Iterable[float], refuse: Refuse) -> None:
    values = list(values)
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        refuse(f"{what} must be finite numbers > 0 (got {' '.join(f'{v:g}' for v in values)})")


def _check_finite_numbers(what: str, values: list[float], refuse: Refuse) -> None:
    if not all(math.isfinite(v) for v in values):
        refuse(f"{what} must be finite numbers")


def _metaimage_layout(path: Path, refuse: Refuse) -> _Layout:
    """MetaImage (.mha/.mhd): ``ElementDataFile = LOCAL`` ends the header (as MetaIO reads it:
    the first line whose name is exactly ElementDataFile), and no other line may name one."""

    def split(line: bytes) -> tuple[str, str]:
        text = line.decode("latin-1")
        match = re.match(r"\s*([^=:]*?)[ \t]*[=:][=:\s]*(.*)", text)
        return (match.group(1), match.group(2).rstrip()) if match else (text.strip(), "")

    lines, offset = _text_header(path, lambda line: split(line)[0] == "ElementDataFile", refuse)
    fields: dict[str, str] = {}
    for line in lines:
        name, value = split(line)
        if name.lower().replace(" ", "") == "elementdatafile" and name != "ElementDataFile":
            refuse(f"the header's {name!r} line is ambiguous: write ElementDataFile = LOCAL")
        fields[name] = value
    if fields["ElementDataFile"] not in _METAIMAGE_LOCAL:
        refuse(
            "the header names a separate data file (ElementDataFile = "
            f"{fields['ElementDataFile'][:80]!r}): only files that carry their voxels "
            "(ElementDataFile = LOCAL, as in .mha) are accepted"
        )
    _refuse_other_mentions(path, rb"elementdatafile", 1, refuse)
    for name in ("ElementSpacing", "ElementSize"):
        if name in fields:
            _check_spacings(name, _numbers(fields[name]), refuse)
    for name in ("Offset", "Origin", "Position", "TransformMatrix", "Rotation", "Orientation"):
        if name in fields:
            _check_finite_numbers(name, _numbers(fields[name]), refuse)
    header_size = _int_field(fields.get("HeaderSize", "0"), "HeaderSize", refuse)
    if header_size > 0:
        offset = header_size
    compressed = fields.get("CompressedData", "False").strip().lower() in ("true", "1")
    declared = None
    if compressed and "CompressedDataSize" in fields:
        declared = _int_field(fields["CompressedDataSize"], "CompressedDataSize", refuse)
        if declared < 0:
            refuse("CompressedDataSize must not be negative")
    binary = fields.get("BinaryData", "True").strip().lower() not in ("false", "0")
    encoding = "deflate" if compressed else ("raw" if binary else "text")
    return _Layout(offset=offset, encoding=encoding, declared_bytes=declared)


def _nrrd_layout(path: Path, refuse: Refuse) -> _Layout:
    """NRRD (.nrrd/.nhdr): the header ends at the first empty line, and may not name a data
    file (``data file`` / ``datafile``, any case: the data must follow the header)."""
    with open(path, "rb") as f:
        if not f.read(8).startswith(b"NRRD000"):
            refuse("not a NRRD file (no NRRD000x magic)")
    lines, offset = _text_header(path, lambda line: line == b"", refuse)
    fields: dict[str, str] = {}
    for line in lines[1:-1]:
        text = line.decode("latin-1")
        if text.startswith("#"):
            continue
        name = text.split(":", 1)[0]
        if re.fullmatch(r"\s*data\s*files?\s*", name, re.IGNORECASE):
            refuse(
                "the header names a separate data file ('data file' field): only files that "
                "carry their voxels after the header are accepted"
            )
        if ":=" not in text and ":" in text:
            fields[name.strip().lower()] = text.split(":", 1)[1].strip()
    _refuse_other_mentions(path, rb"data ?files?\s*:", 0, refuse)
    if "spacings" in fields:
        _check_spacings("spacings", _numbers(fields["spacings"]), refuse)
    if "space directions" in fields:
        for vector in re.findall(r"\(([^)]*)\)", fields["space directions"]):
            values = _numbers(vector)
            if not all(math.isfinite(v) for v in values) or not any(values):
                refuse(f"space directions must be finite, non-zero vectors (got ({vector}))")
    if "space origin" in fields:
        _check_finite_numbers("space origin", _numbers(fields["space origin"]), refuse)
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in _NRRD_ENCODINGS:
        refuse(f"NRRD encoding {encoding!r} is not supported (raw, gzip, ascii or hex)")
    return _Layout(offset=offset, encoding=_NRRD_ENCODINGS[encoding])


def _int_field(text: str, name: str, refuse: Refuse) -> int:
    try:
        return int(text.split()[0]) if text.split() else 0
    except ValueError:
        refuse(f"{name} must be an integer")


def _refuse_other_mentions(path: Path, token: bytes, allowed: int, refuse: Refuse) -> None:
    """Refuse a file holding ``token`` (a regex, case-insensitive) more than ``allowed`` times
    anywhere: a reader parsing the header differently from us must still find no file name."""
    pattern = re.compile(token, re.IGNORECASE)
    found, tail = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            window = tail + chunk
            # Count matches that end in the new chunk only (the tail was searched before).
            found += sum(1 for m in pattern.finditer(window) if m.end() > len(tail))
            tail = window[-64:]
            if found > allowed:
                refuse(
                    "the file names a data file in more than one place: only files that "
                    "carry their voxels are accepted"
                )


def _nifti_layout(path: Path, refuse: Refuse) -> _Layout:
    """NIfTI-1/2 in one file (magic ``n+1``/``n+2``); pixdim and the qform/sform as written."""
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            header = f.read(540)
    except (OSError, EOFError, zlib.error):
        refuse("the compressed data is cut short or corrupt")
    for endian in "<>":
        size = struct.unpack(f"{endian}i", header[:4])[0] if len(header) >= 4 else 0
        if size in (348, 540):
            break
    else:
        refuse("not a NIfTI file (the header size is neither 348 nor 540)")
    if size == 348 and len(header) >= 348:
        magic, version = header[344:348], 1
        datatype = struct.unpack(f"{endian}h", header[70:72])[0]
        scaling = struct.unpack(f"{endian}2f", header[112:120])
        dims = struct.unpack(f"{endian}8h", header[40:56])
        bitpix = struct.unpack(f"{endian}h", header[72:74])[0]
        pixdim = struct.unpack(f"{endian}8f", header[76:108])
        offset = struct.unpack(f"{endian}f", header[108:112])[0]
        codes = struct.unpack(f"{endian}2h", header[252:256])
        quatern = struct.unpack(f"{endian}6f", header[256:280])
        srows = struct.unpack(f"{endian}12f", header[280:328])
    elif size == 540 and len(header) >= 540:
        magic, version = header[4:8], 2
        datatype = struct.unpack(f"{endian}h", header[12:14])[0]
        scaling = struct.unpack(f"{endian}2d", header[176:192])
        bitpix = struct.unpack(f"{endian}h", header[14:16])[0]
        dims = struct.unpack(f"{endian}8q", header[16:80])
        pixdim = struct.unpack(f"{endian}8d", header[104:168])
        offset = struct.unpack(f"{endian}q", header[168:176])[0]
        codes = struct.unpack(f"{endian}2i", header[344:352])
        quatern = struct.unpack(f"{endian}6d", header[352:400])
        srows = struct.unpack(f"{endian}12d", header[400:496])
    else:
        refuse("the NIfTI header is cut short")
    if magic[:3] == f"ni{version}".encode():
        refuse(
            "a two-file NIfTI header (magic 'ni1'/'ni2', voxels in a separate .img file): only "
            "single-file NIfTI (.nii, .nii.gz) is accepted"
        )
    if magic[:3] != f"n+{version}".encode() or magic[3:4] != b"\0":
        refuse("not a NIfTI file (no n+1 / n+2 magic)")
    rank = int(dims[0])
    if not 1 <= rank <= 7 or any(int(d) < 1 for d in dims[1 : rank + 1]):
        refuse(f"the NIfTI dimensions {list(dims[: rank + 1])} are not valid")
    if bitpix not in (8, 16, 32, 64, 128):
        refuse(f"unsupported NIfTI bits per voxel ({bitpix})")
    if not math.isfinite(offset) or offset < size:
        refuse(f"the NIfTI data offset ({offset}) lies inside the header")
    _check_spacings("pixdim", pixdim[1 : min(rank, 3) + 1], refuse)
    _check_finite_numbers("scl_slope and scl_inter", list(scaling), refuse)
    if codes[0] > 0:
        _check_finite_numbers("the qform (quatern_b..d, qoffset_x..z)", list(quatern), refuse)
    if codes[1] > 0:
        _check_finite_numbers("the sform (srow_x..z)", list(srows), refuse)
    floats = {16: "f4", 64: "f8"}  # NIfTI FLOAT32, FLOAT64
    # Dimensions past the third (time, vector components) are stored in every voxel of the 3D
    # grid ITK reports: a vector image's components are counted in its bytes.
    components = math.prod(int(d) for d in dims[4 : rank + 1])
    return _Layout(
        offset=int(offset),
        encoding="deflate" if gz else "raw",
        bytes_per_voxel=bitpix // 8 * components,
        float_dtype=endian + floats[datatype] if datatype in floats else None,
    )


# --------------------------------------------------------------------------------------------
# What ITK read from the header, before it allocates


def _check_information(
    reader: sitk.ImageFileReader, layout: _Layout, path: Path, refuse: Refuse, colour: bool
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
    _check_spacings("the spacing", reader.GetSpacing(), refuse)
    _check_finite_numbers("the origin", list(reader.GetOrigin()), refuse)
    _check_finite_numbers("the direction", list(reader.GetDirection()), refuse)


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
