"""What an uploaded image file's own header declares (NIfTI, NRRD, MetaImage), read by the server
before ITK sees the file: where its voxel data starts, how it is encoded, and, for NIfTI, the
bytes per voxel and float type as stored (:class:`Layout`). Used by
:func:`annotator.imaging.image_files.read_image`, which checks what ITK then reads against it.

A header may not name another file (NRRD ``data file``, MetaImage ``ElementDataFile`` other than
``LOCAL``, two-file NIfTI); its spacings must be finite and > 0 as written (ITK silently turns 0,
NaN and infinity into 1), and its origins, directions and scalings finite. Each reader takes a
``refuse`` function that raises the upload's error with the reason.
"""

import gzip
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

# A text header (NRRD, MetaImage) must end within this many bytes.
HEADER_LIMIT = 1024 * 1024
# MetaIO accepts exactly these spellings of "the data follows the header in this file".
_METAIMAGE_LOCAL = ("LOCAL", "Local", "local")
_NRRD_ENCODINGS = {"raw": "raw", "gzip": "deflate", "gz": "deflate", "hex": "hex"}
_NRRD_ENCODINGS.update({"ascii": "text", "text": "text", "txt": "text"})

Refuse = Callable[[str], NoReturn]


@dataclass(frozen=True)
class Layout:
    """Where a file's voxel data is and how it is stored, as its header says."""

    offset: int  # the first byte of the voxel data
    encoding: str  # "raw", "deflate", "text", "hex", or "picture" (PNG, JPEG: not counted)
    # Every component of a voxel as stored (NIfTI: before ITK's rescale); None: ITK's
    bytes_per_voxel: int | None = None
    declared_bytes: int | None = None  # bytes the reader allocates for the compressed data
    # NIfTI float voxels as stored ("<f4", ">f8"): the NIfTI library silently reads NaN and
    # infinity as 0, so they are looked for in the file itself.
    float_dtype: str | None = None


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


def check_spacings(what: str, values: Iterable[float], refuse: Refuse) -> None:
    values = list(values)
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        refuse(f"{what} must be finite numbers > 0 (got {' '.join(f'{v:g}' for v in values)})")


def check_finite_numbers(what: str, values: list[float], refuse: Refuse) -> None:
    if not all(math.isfinite(v) for v in values):
        refuse(f"{what} must be finite numbers")


def metaimage_layout(path: Path, refuse: Refuse) -> Layout:
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
            check_spacings(name, _numbers(fields[name]), refuse)
    for name in ("Offset", "Origin", "Position", "TransformMatrix", "Rotation", "Orientation"):
        if name in fields:
            check_finite_numbers(name, _numbers(fields[name]), refuse)
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
    return Layout(offset=offset, encoding=encoding, declared_bytes=declared)


def nrrd_layout(path: Path, refuse: Refuse) -> Layout:
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
        check_spacings("spacings", _numbers(fields["spacings"]), refuse)
    if "space directions" in fields:
        for vector in re.findall(r"\(([^)]*)\)", fields["space directions"]):
            values = _numbers(vector)
            if not all(math.isfinite(v) for v in values) or not any(values):
                refuse(f"space directions must be finite, non-zero vectors (got ({vector}))")
    if "space origin" in fields:
        check_finite_numbers("space origin", _numbers(fields["space origin"]), refuse)
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in _NRRD_ENCODINGS:
        refuse(f"NRRD encoding {encoding!r} is not supported (raw, gzip, ascii or hex)")
    return Layout(offset=offset, encoding=_NRRD_ENCODINGS[encoding])


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


def nifti_layout(path: Path, refuse: Refuse) -> Layout:
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
    check_spacings("pixdim", pixdim[1 : min(rank, 3) + 1], refuse)
    check_finite_numbers("scl_slope and scl_inter", list(scaling), refuse)
    if codes[0] > 0:
        check_finite_numbers("the qform (quatern_b..d, qoffset_x..z)", list(quatern), refuse)
    if codes[1] > 0:
        check_finite_numbers("the sform (srow_x..z)", list(srows), refuse)
    floats = {16: "f4", 64: "f8"}  # NIfTI FLOAT32, FLOAT64
    # Dimensions past the third (time, vector components) are stored in every voxel of the 3D
    # grid ITK reports: a vector image's components are counted in its bytes.
    components = math.prod(int(d) for d in dims[4 : rank + 1])
    return Layout(
        offset=int(offset),
        encoding="deflate" if gz else "raw",
        bytes_per_voxel=bitpix // 8 * components,
        float_dtype=endian + floats[datatype] if datatype in floats else None,
    )
