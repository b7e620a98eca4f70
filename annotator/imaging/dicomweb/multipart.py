"""Accept-header negotiation and multipart/related bodies for WADO-RS.

Negotiation of frames (``.../frames/{n}``), first acceptable alternative wins (by ``q``, then
order); ``multipart/related`` and ``*/*`` ranges both count, the inner ``type`` parameter names
the part's media type:

- ``transfer-syntax=*`` (any ``type``): each frame as it is stored, compressed or not, with the
  stored syntax's media type (``image/jp2``, ``image/jls``, ``image/jpeg``, ``image/jphc``,
  ``image/x-dicom-rle``; ``application/octet-stream`` for uncompressed syntaxes);
- ``transfer-syntax=<the stored syntax>``, or a ``type`` that is the stored syntax's media type
  with no transfer-syntax: as stored;
- ``type="application/octet-stream"`` with no transfer-syntax or with ``1.2.840.10008.1.2.1``
  (or ``1.2.840.10008.1.2``), ``type="*/*"`` with no transfer-syntax, or no Accept header:
  uncompressed little-endian frames (PS3.18's default), sliced from the file when it is stored
  uncompressed, decoded with pydicom's handlers otherwise;
- anything else (another compressed syntax, a media type that is not the stored one): 406.

A range that is not multipart (``application/octet-stream; transfer-syntax=*``, ``image/jp2``...)
asks for a single-part payload (PS3.18 8.7.3.5): the frame's bytes as the whole body, with its
media type and ``transfer-syntax`` in Content-Type. It is offered for one frame only; for several
frames such ranges are skipped (the next alternative wins, or 406). The viewer asks for it: a
multipart body must be searched for its closing boundary, a single part need not be.

Instances (``.../instances/{i}``, ``.../series/{s}``, ``.../studies/{s}``) are
``multipart/related; type="application/dicom"``, by default (no ``transfer-syntax``, or no
Accept header) in explicit VR little endian as PS3.18 8.7.3.5.2 says: implicit VR made explicit,
compressed pixel data decoded with pydicom (an instance no installed decoder can decode, or
stored big endian, is sent as stored). ``transfer-syntax=*`` or the stored syntax: the files as
they were received; ``transfer-syntax=1.2.840.10008.1.2.1``: explicit VR little endian or 406;
anything else is 406. Asked for ``type="application/octet-stream"`` first, the same
resources give their bulk data instead: every frame of every instance, in the series' order, one
part each, negotiated as frames are (above), each part with the ``Content-Location`` of its frame
resource and its ``Content-Length`` (a client finds the parts without searching for boundaries).
The viewer loads a volume so, in one request.
"""

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"
NATIVE_SYNTAXES = {
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
}
LITTLE_ENDIAN_NATIVE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
# The media type of a frame stored in each compressed transfer syntax (PS3.18 table 8.7.3-5).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}
MEDIA_TYPE_ALIASES = {"image/dicom-rle": "image/x-dicom-rle", "image/x-jls": "image/jls"}


@dataclass(frozen=True)
class MediaRange:
    type: str  # the part's media type ("*/*" when the range does not say)
    transfer_syntax: str | None
    q: float
    single: bool = False  # a single-part payload (the range is not multipart)


def _split(value: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_accept(header: str | None) -> list[MediaRange]:
    """The alternatives of an Accept header, best first ("*/*" when there is none)."""
    ranges: list[tuple[float, int, MediaRange]] = []
    for position, item in enumerate(_split(header or "*/*", ",")):
        media_type, *raw_params = _split(item, ";")
        params: dict[str, str] = {}
        for raw in raw_params:
            name, _, value = raw.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        media_type = media_type.lower()
        single = media_type not in ("multipart/related", "multipart/*", "*/*")
        if single:
            if media_type.startswith("multipart/"):
                continue  # another multipart kind
            inner = media_type
        else:
            inner = params.get("type", "*/*").lower()
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q <= 0:
            continue
        inner = MEDIA_TYPE_ALIASES.get(inner, inner)
        syntax = params.get("transfer-syntax")
        ranges.append((-q, position, MediaRange(inner, syntax, q, single)))
    return [r for _, _, r in sorted(ranges, key=lambda t: (t[0], t[1]))]


@dataclass(frozen=True)
class FrameFormat:
    stored: bool  # True: the stored bytes as they are; False: uncompressed little endian
    media_type: str
    transfer_syntax: str


def stored_frame_format(stored_syntax: str) -> FrameFormat:
    if stored_syntax in LITTLE_ENDIAN_NATIVE:
        return FrameFormat(True, OCTET_STREAM, stored_syntax)
    if stored_syntax in NATIVE_SYNTAXES:
        # Deflated or big endian: the frame is re-read as plain little-endian bytes.
        return FrameFormat(False, OCTET_STREAM, ExplicitVRLittleEndian)
    return FrameFormat(True, FRAME_MEDIA_TYPES.get(stored_syntax, OCTET_STREAM), stored_syntax)


def negotiate_frames(
    accept: str | None, stored_syntax: str, count: int = 1
) -> tuple[FrameFormat, bool] | None:
    """How to send ``count`` frames of an instance stored in ``stored_syntax`` (0: frames of
    several instances, multipart only): the format and whether as a single-part payload;
    None: 406."""
    for option in parse_accept(accept):
        if option.single and count != 1:
            continue
        fmt = _frame_format(option, stored_syntax)
        if fmt is not None:
            return fmt, option.single
    return None


def _frame_format(option: MediaRange, stored_syntax: str) -> FrameFormat | None:
    stored = stored_frame_format(stored_syntax)
    decodable = stored_syntax in NATIVE_SYNTAXES or stored_syntax in FRAME_MEDIA_TYPES
    syntax = option.transfer_syntax
    if syntax == "*" or (syntax is not None and syntax == stored_syntax):
        if option.type in ("*/*", stored.media_type, OCTET_STREAM):
            return stored
        return None
    if syntax is None and option.type == stored.media_type and option.type != OCTET_STREAM:
        return stored
    if (
        decodable
        and option.type in (OCTET_STREAM, "*/*")
        and syntax in (None, ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    ):
        return FrameFormat(
            stored_syntax in LITTLE_ENDIAN_NATIVE,
            OCTET_STREAM,
            syntax or ExplicitVRLittleEndian,
        )
    return None


def wants_bulkdata(accept: str | None) -> bool:
    """Whether a study / series / instance retrieval asks for the bulk data (the frames of every
    instance, ``type="application/octet-stream"``) before the instances themselves."""
    for option in parse_accept(accept):
        if option.single:
            continue
        if option.type == OCTET_STREAM:
            return True
        if option.type in (DICOM, "*/*"):
            return False
    return False


def negotiate_instances(accept: str | None) -> list[str | None]:
    """The transfer syntaxes acceptable for instances, best first ("*": as stored; None: the
    default, explicit VR little endian where it can be produced); [] -> 406."""
    syntaxes: list[str | None] = []
    for option in parse_accept(accept):
        if option.single:
            continue  # instances come as multipart only
        if option.type in (DICOM, "*/*"):
            syntaxes.append(option.transfer_syntax)
    return syntaxes


@dataclass
class Part:
    content_type: str
    chunks: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)


def new_boundary() -> str:
    return "dicomweb-" + secrets.token_hex(16)


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def stream(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body of a multipart/related message (RFC 2387), part by part."""
    marker = b"--" + boundary.encode("ascii")
    for part in parts:
        lines = [f"Content-Type: {part.content_type}"]
        lines += [f"{name}: {value}" for name, value in part.headers.items()]
        yield marker + b"\r\n" + "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
        yield from part.chunks
        yield b"\r\n"
    yield marker + b"--\r\n"
