"""Reading stored instances for DICOMweb: headers without pixels, frames by byte offset.

A frame is never found by loading the instance's pixel data: the header is parsed up to the
Pixel Data element (pydicom's ``stop_before_pixels`` leaves the file positioned on its tag), then
an uncompressed frame is read at ``value offset + index * frame size`` and a compressed one is
located through the Basic (or Extended) Offset Table with ``pydicom.encaps.get_frame``, reading
only its fragments. Decoding (compressed -> uncompressed) uses ``pydicom.pixels.pixel_array``
on the one frame.
"""

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import numpy as np
from django.core.files.storage import default_storage
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from annotator.imaging.dicomweb.multipart import FrameFormat
from annotator.models import Instance

CHUNK = 256 * 1024


class NoPixelData(Exception):
    pass


@contextmanager
def open_file(instance: Instance) -> Iterator[IO[bytes]]:
    with default_storage.open(instance.storage_key, "rb") as f:
        yield f


def iter_file(instance: Instance) -> Iterator[bytes]:
    """The stored file, chunk by chunk."""
    with open_file(instance) as f:
        while chunk := f.read(CHUNK):
            yield chunk


@dataclass
class Header:
    dataset: Dataset  # every attribute before Pixel Data (file meta included)
    transfer_syntax: str
    pixel_vr: str | None  # None: the instance holds no Pixel Data
    value_offset: int | None  # where the Pixel Data value starts (None: deflated file)
    value_length: int | None  # None: encapsulated (undefined length)

    @property
    def number_of_frames(self) -> int:
        try:
            return max(int(self.dataset.get("NumberOfFrames") or 1), 1)
        except (TypeError, ValueError):
            return 1

    @property
    def frame_bits(self) -> int:
        """The size of one uncompressed frame, in bits."""
        ds = self.dataset
        samples = int(ds.get("SamplesPerPixel", 1))
        if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            samples = 2  # two chroma samples shared by each pair of pixels
        return int(ds.Rows) * int(ds.Columns) * samples * int(ds.BitsAllocated)


def read_header(f: IO[bytes]) -> Header:
    ds = dcmread(f, stop_before_pixels=True)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian))
    if syntax == DeflatedExplicitVRLittleEndian:
        # The file is one zlib stream: no offsets; frames are decoded from the whole dataset.
        vr = "OW" if int(ds.get("BitsAllocated", 8)) > 8 else "OB"
        return Header(ds, syntax, vr if "Rows" in ds else None, None, None)
    little = syntax != ExplicitVRBigEndian
    implicit = syntax == ImplicitVRLittleEndian
    start = f.tell()
    head = f.read(12)
    endian = "<" if little else ">"
    if len(head) < 8 or struct.unpack(f"{endian}HH", head[:4]) != (0x7FE0, 0x0010):
        return Header(ds, syntax, None, None, None)
    if implicit:
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
        vr = "OW" if int(ds.get("BitsAllocated", 8)) > 8 else "OB"
    else:
        vr = head[4:6].decode("ascii", "replace")
        (length,) = struct.unpack(f"{endian}I", head[8:12])
        offset = start + 12
    if length == 0xFFFFFFFF:
        return Header(ds, syntax, "OB", offset, None)
    return Header(ds, syntax, vr, offset, length)


def read_instance_header(instance: Instance) -> Header:
    with open_file(instance) as f:
        return read_header(f)


def _stored_frame(f: IO[bytes], header: Header, index: int) -> bytes | None:
    """The frame's bytes as stored, or None when they cannot be cut out of the file."""
    if header.value_offset is None:
        return None
    if header.value_length is None:
        f.seek(header.value_offset)
        eot = header.dataset.get("ExtendedOffsetTable")
        lengths = header.dataset.get("ExtendedOffsetTableLengths")
        extended: Any = (eot, lengths) if eot is not None and lengths is not None else None
        return get_frame(
            f, index, number_of_frames=header.number_of_frames, extended_offsets=extended
        )
    bits = header.frame_bits
    if bits % 8:
        return None  # bit-packed frames that do not start on a byte
    size = bits // 8
    if (index + 1) * size > header.value_length:
        raise NoPixelData(f"frame {index + 1} lies beyond the pixel data")
    f.seek(header.value_offset + index * size)
    data = f.read(size)
    if len(data) != size:
        raise NoPixelData(f"frame {index + 1} is cut short")
    return data


def _decoded_frame(f: IO[bytes], header: Header, index: int) -> bytes:
    f.seek(0)
    if header.transfer_syntax == DeflatedExplicitVRLittleEndian:
        full = dcmread(f)
        if "PixelData" not in full:
            raise NoPixelData("the instance holds no pixel data")
        array = full.pixel_array
        array = array[index] if header.number_of_frames > 1 else array
    else:
        try:
            array = pixel_array(cast(BinaryIO, f), index=index)
        except Exception:  # some malformed encapsulations only decode from the whole dataset
            f.seek(0)
            array = dcmread(f).pixel_array
            array = array[index] if header.number_of_frames > 1 else array
    if int(header.dataset.BitsAllocated) == 1:
        return np.packbits(array.astype(np.uint8).ravel(), bitorder="little").tobytes()
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).tobytes()


def frame_bytes(f: IO[bytes], header: Header, index: int, fmt: FrameFormat) -> bytes:
    """Frame ``index`` (0-based) in the negotiated format."""
    if header.pixel_vr is None:
        raise NoPixelData("the instance holds no pixel data")
    if fmt.stored:
        data = _stored_frame(f, header, index)
        if data is not None:
            return data
    return _decoded_frame(f, header, index)


def iter_frames(
    instance: Instance, header: Header, numbers: list[int], fmt: FrameFormat
) -> Iterator[bytes]:
    with open_file(instance) as f:
        for number in numbers:
            yield frame_bytes(f, header, number - 1, fmt)
