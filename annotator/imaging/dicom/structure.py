"""A DICOM file's encoded structure, counted before pydicom parses any of it.

pydicom parses a sequence of undefined length while it reads the file (that is the only way to
find where the sequence ends), building a Dataset for every item: about 1 kB of memory and
30 us for an item that takes 16 bytes of the file, and a level of Python recursion for every
level of nesting. Sequences of defined length are parsed later, whole, when first used (the
frames' geometry, the labels import, the DICOMweb metadata). So a few megabytes can declare
millions of items, and a 2 GiB upload tens of gigabytes of them.

:func:`structure_problem` walks the element headers the way :mod:`pydicom.filereader` will read
them (the same transfer syntax, the same implicit / explicit VR guesses, undefined lengths
followed to their delimiters, encapsulated pixel data through its fragment headers, sequences of
defined length entered where pydicom would convert them to sequences), reading no value, and
refuses a file whose data elements, sequence items, fragments or nesting pass a cap before
pydicom reads it. The walk is bounded itself: it stops at the first cap, every header it counts
moves it on by 8 bytes at least, it recurses no deeper than the depth cap, the bytes it searches
for missing delimiters are capped, and the file is mapped, never read whole (the pages of
fragments and searches are let go as it passes them).

The rules are pydicom 3's own, down to its private helpers where its reader uses them
(``_dictionary_vr_fast``); tests/annotator/test_dicom_structure.py compares the counts with
what pydicom builds, on its test files, real objects and odd encodings.
"""

import contextlib
import mmap
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import config
from pydicom.datadict import _dictionary_vr_fast, dictionary_VR, private_dictionary_VR
from pydicom.filereader import ENCODED_VR
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import converters

# Caps on one file, nested sequences included, generous for real objects: per-frame functional
# groups take 5 to 15 items and 20 to 50 elements a frame (a highdicom SEG 7 and 19: 6,000
# frames, 42,000 items), an RTSTRUCT 2 items and 7 elements a contour (hundreds of ROIs on a
# few hundred slices: tens of thousands of contours). The most compact file at both caps costs
# pydicom about 7 s and 400 MB to read (16 bytes an item in the file).
MAX_ELEMENTS = 1_000_000
MAX_ITEMS = 200_000
# Real objects nest 4 to 8 sequences deep; pydicom recurses for each level of undefined length.
MAX_DEPTH = 32
# Encapsulated pixel data: a frame takes one fragment or a few.
MAX_FRAGMENTS = 1_000_000
# A deflated dataset is inflated whole in memory by pydicom: at most this much.
MAX_INFLATED_BYTES = 1024**3

UNDEFINED = 0xFFFFFFFF
ITEM_END = 0xFFFEE00D
LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)  # a 4-byte length
PAGE = mmap.PAGESIZE
RELEASE_EVERY = 64 * 1024 * 1024  # bytes of file passed between letting their pages go


@dataclass(frozen=True)
class StructureLimits:
    max_elements: int = MAX_ELEMENTS
    max_items: int = MAX_ITEMS
    max_depth: int = MAX_DEPTH
    max_fragments: int = MAX_FRAGMENTS
    max_inflated_bytes: int = MAX_INFLATED_BYTES


DEFAULT_STRUCTURE_LIMITS = StructureLimits()


@dataclass
class Counts:
    elements: int = 0
    items: int = 0
    fragments: int = 0
    depth: int = 0  # the deepest sequence nesting


class StructureRefused(ValueError):
    """Over a cap; the message says which."""


class _Unreadable(Exception):
    """pydicom fails at this point of the file too (it says why): nothing further to count."""


class _NoDelimiter(Exception):
    """An undefined-length value without its delimiter: pydicom's EOFError, which ends the
    dataset being read and leaves the file at the value's start."""

    def __init__(self, position: int) -> None:
        self.position = position


@dataclass(frozen=True)
class _Syntax:
    """How headers are encoded in one byte order."""

    element: struct.Struct  # explicit VR: group, element, VR, 2-byte length
    implicit: struct.Struct  # group, element, 4-byte length (also item headers)
    length: struct.Struct  # a 4-byte length
    item: bytes  # the tag (FFFE,E000)
    sequence_end: bytes  # the tag (FFFE,E0DD)

    @classmethod
    def of(cls, little: bool) -> "_Syntax":
        order = "<" if little else ">"
        return cls(
            struct.Struct(f"{order}HH2sH"),
            struct.Struct(f"{order}HHL"),
            struct.Struct(f"{order}L"),
            struct.pack(f"{order}HH", 0xFFFE, 0xE000),
            struct.pack(f"{order}HH", 0xFFFE, 0xE0DD),
        )


LITTLE, BIG = _Syntax.of(True), _Syntax.of(False)


class _Walker:
    """pydicom's reader (filereader.read_dataset, data_element_generator, read_sequence,
    fileutil.read_undefined_length_value) with the values skipped and everything counted."""

    def __init__(self, buffer: Any, limits: StructureLimits, counts: Counts | None = None) -> None:
        self.buffer = buffer
        self.size = len(buffer)
        self.limits = limits
        self.counts = counts or Counts()
        self.searched = 0  # bytes searched for a missing delimiter, in all
        self.released = 0  # pages before this offset were let go

    # -- counting -------------------------------------------------------------------------

    def _element(self) -> None:
        self.counts.elements += 1
        if self.counts.elements > self.limits.max_elements:
            raise StructureRefused(
                f"too complex: more than {self.limits.max_elements} data elements "
                "(nested ones included)"
            )

    def _item(self) -> None:
        self.counts.items += 1
        if self.counts.items > self.limits.max_items:
            raise StructureRefused(f"too complex: more than {self.limits.max_items} sequence items")

    def _release(self, position: int) -> None:
        """Let the pages of the mapping before ``position`` go (they were only looked at)."""
        if isinstance(self.buffer, mmap.mmap) and position - self.released >= RELEASE_EVERY:
            start = self.released - self.released % PAGE
            stop = min(position, self.size) - min(position, self.size) % PAGE
            if stop > start:
                self.buffer.madvise(mmap.MADV_DONTNEED, start, stop - start)
            self.released = position

    # -- pydicom's reader -----------------------------------------------------------------

    def dataset(
        self,
        pos: int,
        end: int,
        implicit: bool,
        syntax: _Syntax,
        length: int | None = None,
        *,
        stop_group: int | None = None,
        top: bool = True,
        depth: int = 0,
        seen: dict[int, tuple[bytes | None, int, int]] | None = None,
    ) -> int:
        """Walk a dataset from ``pos`` (read_dataset): to the end of the data (``end``), an
        item delimiter, ``length`` bytes, or the first element outside ``stop_group``. Returns
        where pydicom's file position will be. ``seen`` collects tag -> (VR, value offset,
        length) of the elements (for the file meta)."""
        buffer, start = self.buffer, pos
        # filereader._is_implicit_vr: the first element's VR bytes decide, except in an item
        # of a sequence read as implicit VR.
        if not (not top and implicit) and pos + 6 <= end:
            a, b = buffer[pos + 4], buffer[pos + 5]
            implicit = not (0x40 < a < 0x5B and 0x40 < b < 0x5B)
        element, implicit_header = syntax.element, syntax.implicit
        creators: dict[int, tuple[int, int]] = {}
        try:
            while length is None or pos - start < length:
                if pos + 8 > end:
                    return end
                vr: bytes | None
                if implicit:
                    group, number, size = implicit_header.unpack_from(buffer, pos)
                    vr, header = None, 8
                else:
                    group, number, vr, size = element.unpack_from(buffer, pos)
                    header = 8
                    if vr in ENCODED_VR:
                        if vr in LONG_VRS:
                            if pos + 12 > end:
                                raise _Unreadable
                            size = syntax.length.unpack_from(buffer, pos + 8)[0]
                            header = 12
                    elif not (b"AA" <= vr <= b"ZZ") and config.assume_implicit_vr_switch:
                        group, number, size = implicit_header.unpack_from(buffer, pos)
                        vr = None
                tag, value = group << 16 | number, pos + header
                if tag == ITEM_END:
                    return value
                if stop_group is not None and group != stop_group:
                    return pos
                self._element()
                if seen is not None:
                    seen[tag] = (vr, value, size)
                if size != UNDEFINED:
                    if group & 1 and 0x10 <= number <= 0xFF:
                        creators[tag] = (value, size)
                    if self._converts_to_sequence(tag, vr, value, size, end, syntax, creators):
                        # Parsed from the value's bytes (values.convert_SQ) when first used;
                        # where that fails, pydicom builds nothing more of it.
                        stop = min(value + size, end)
                        with contextlib.suppress(_Unreadable):
                            self.sequence(value, stop, implicit, syntax, stop - value, depth)
                    pos = value + size
                    continue
                if vr == b"UN" and config.settings.infer_sq_for_un_vr:
                    vr = b"SQ"
                is_sequence = vr == b"SQ"
                if vr is None or (vr == b"UN" and config.replace_un_with_known_vr):
                    try:
                        is_sequence = _dictionary_vr_fast(tag) == "SQ"
                    except KeyError:  # a private tag: a sequence when an item follows
                        if value + 4 > end:
                            raise _Unreadable from None
                        is_sequence = buffer[value : value + 4] == syntax.item
                if is_sequence:
                    pos = self.sequence(value, end, implicit, syntax, UNDEFINED, depth)
                else:
                    pos = self.undefined_value(value, end, syntax)
        except _NoDelimiter as missing:
            return missing.position
        return pos

    def sequence(
        self, pos: int, end: int, implicit: bool, syntax: _Syntax, length: int, depth: int
    ) -> int:
        """Walk a sequence's items (read_sequence, read_sequence_item); returns the position
        after it."""
        depth += 1
        if depth > self.limits.max_depth:
            raise StructureRefused(
                f"too complex: sequences nested more than {self.limits.max_depth} deep"
            )
        start, header = pos, syntax.implicit
        while length == UNDEFINED or pos - start < length:
            if pos + 8 > end:
                raise _Unreadable  # pydicom: "No tag to read"
            group, number, size = header.unpack_from(self.buffer, pos)
            if group == 0xFFFE and number == 0xE0DD:
                return pos + 8
            self._item()  # any other tag is read as an item too
            if depth > self.counts.depth:
                self.counts.depth = depth
            pos = self.dataset(
                pos + 8,
                end,
                implicit,
                syntax,
                None if size == UNDEFINED else size,
                top=False,
                depth=depth,
            )
        return pos

    def undefined_value(self, pos: int, end: int, syntax: _Syntax) -> int:
        """Skip an undefined-length value that is not a sequence (fileutil.
        read_undefined_length_value): item by item as encapsulated pixel data, else by a
        search for the sequence delimiter. Returns the position after the delimiter."""
        buffer, start = self.buffer, pos
        while pos + 4 <= end:
            tag = buffer[pos : pos + 4]
            if tag == syntax.sequence_end:
                return pos + 8
            if tag != syntax.item or pos + 8 > end:
                break
            self.counts.fragments += 1
            if self.counts.fragments > self.limits.max_fragments:
                raise StructureRefused(
                    f"too complex: more than {self.limits.max_fragments} fragments of "
                    "encapsulated pixel data"
                )
            pos += 8 + syntax.length.unpack_from(buffer, pos + 4)[0]
            if pos - self.released >= RELEASE_EVERY:
                self._release(pos)
        # Not fragments: the first delimiter's bytes, wherever they are.
        found = self._find(syntax.sequence_end, start, end)
        if found < 0:
            raise _NoDelimiter(start)
        return found + 8

    def _find(self, needle: bytes, start: int, end: int) -> int:
        """``buffer.find`` in steps, letting the pages searched go; the bytes searched in all
        are capped (every missing delimiter makes pydicom search to the end of the data)."""
        self.searched += end - start
        if self.searched > 4 * self.size + 1024 * 1024:
            raise StructureRefused(
                "too complex: undefined-length values without their delimiter make the data "
                "searched many times over"
            )
        step = RELEASE_EVERY
        for chunk in range(start, end, step):
            found = self.buffer.find(needle, chunk, min(chunk + step + len(needle) - 1, end))
            self._release(chunk + step)
            if found >= 0:
                return int(found)
        return -1

    def _converts_to_sequence(
        self,
        tag: int,
        vr: bytes | None,
        value: int,
        size: int,
        end: int,
        syntax: _Syntax,
        creators: dict[int, tuple[int, int]],
    ) -> bool:
        """Whether pydicom makes a sequence of this defined-length element when it is used
        (hooks.raw_element_vr); values that start with an item tag are counted too."""
        if vr == b"SQ":
            return True
        if vr is not None and vr != b"UN":
            return False
        if vr is None or config.replace_un_with_known_vr:
            if tag >> 16 & 1:
                if self._private_vr(tag, creators) == "SQ":
                    return True
            elif vr is None or size < 0xFFFF:
                try:
                    if dictionary_VR(tag) == "SQ":
                        return True
                except KeyError:
                    pass
        return value + 4 <= min(end, value + size) and self.buffer[value : value + 4] == syntax.item

    def _private_vr(self, tag: int, creators: dict[int, tuple[int, int]]) -> str:
        """The private dictionary's VR for ``tag`` under its creator in the same dataset."""
        creator = creators.get(tag & 0xFFFF0000 | (tag & 0xFF00) >> 8)
        if not tag & 0xFF00 or creator is None:
            return ""
        start, size = creator
        text = bytes(self.buffer[start : start + min(size, 256)]).decode("latin-1")
        for name in text.split("\\"):  # any of its values: a multi-valued creator is odd
            try:
                if private_dictionary_VR(tag, name.rstrip("\0 ")) == "SQ":
                    return "SQ"
            except (KeyError, TypeError):
                continue
        return ""


def _syntax_of(
    walker: _Walker, meta: dict[int, tuple[bytes | None, int, int]], pos: int
) -> tuple[bool, _Syntax, bool]:
    """(implicit VR, byte order, deflated) as filereader.read_partial chooses them."""
    entry = meta.get(0x00020010)
    if entry is None:  # no TransferSyntaxUID: guessed from the first element
        if pos + 6 > walker.size:
            return True, LITTLE, False
        group = struct.unpack_from("<H", walker.buffer, pos)[0]
        guess = bytes(walker.buffer[pos + 4 : pos + 6]).decode("latin-1")
        if guess in converters:
            return False, (BIG if group >= 1024 else LITTLE), False
        return True, LITTLE, False
    vr, start, size = entry
    if vr not in (None, b"UI", b"UN"):  # pydicom would compare a value of another type
        shown = vr.decode("latin-1") if vr else ""
        raise StructureRefused(f"the file meta's TransferSyntaxUID has VR {shown!r}, not UI")
    uid = bytes(walker.buffer[start : start + min(size, 256)]).decode("latin-1").rstrip("\0 ")
    if uid == ImplicitVRLittleEndian:
        return True, LITTLE, False
    if uid == ExplicitVRBigEndian:
        return False, BIG, False
    if uid == DeflatedExplicitVRLittleEndian:
        return False, LITTLE, True
    if uid in PrivateTransferSyntaxes:
        private = PrivateTransferSyntaxes[PrivateTransferSyntaxes.index(uid)]
        return private.is_implicit_VR, LITTLE if private.is_little_endian else BIG, False
    return False, LITTLE, False  # explicit VR little endian, and every encapsulated syntax


def _inflate(path: Path, start: int, limit: int, out: Any) -> None:
    """Inflate the deflated dataset from ``start`` into ``out``; refuses one that is corrupt or
    inflates past ``limit`` bytes (counted as it comes: a few kilobytes can inflate to
    gigabytes, and no more than ``limit`` is ever written)."""
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(1024 * 1024)
        while data and not inflater.eof:
            try:
                chunk = inflater.decompress(data, 8 * 1024 * 1024)
            except zlib.error:
                raise StructureRefused("the deflated dataset is corrupt") from None
            total += len(chunk)
            if total > limit:
                raise StructureRefused(f"the deflated dataset inflates to more than {limit} bytes")
            out.write(chunk)
            data = inflater.unconsumed_tail or f.read(1024 * 1024)


def _walk_file(path: Path, buffer: Any, limits: StructureLimits) -> Counts:
    """filereader.read_partial's order: preamble, file meta, command set, then the dataset in
    the transfer syntax the meta names (inflated first when it is deflated)."""
    walker = _Walker(buffer, limits)
    size = walker.size
    if size < 132 or buffer[128:132] != b"DICM":
        return walker.counts  # not a DICOM file: pydicom says why
    try:
        # _read_file_meta_info: explicit VR little endian, group 0002 only
        meta: dict[int, tuple[bytes | None, int, int]] = {}
        pos = walker.dataset(132, size, False, LITTLE, stop_group=0x0002, seen=meta)
        first = meta[min(meta)] if meta else None
        if first is not None and first[0] is not None and first[0] not in ENCODED_VR:
            meta = {}  # an unknown VR: pydicom reads the group again as implicit VR
            pos = walker.dataset(132, size, True, LITTLE, stop_group=0x0002, seen=meta)
        # _read_command_set_elements: group 0000, implicit VR little endian
        pos = walker.dataset(pos, size, True, LITTLE, stop_group=0x0000)
        if pos >= size:
            return walker.counts
        implicit, syntax, deflated = _syntax_of(walker, meta, pos)
        if not deflated:
            walker.dataset(pos, size, implicit, syntax)
            return walker.counts
    except _Unreadable:
        return walker.counts
    # Refused as soon as it passes the cap: the temporary file, deleted on the way out, holds
    # no more than a dataset within the cap would.
    with tempfile.TemporaryFile(prefix="annotator-inflated-") as out:
        _inflate(path, pos, limits.max_inflated_bytes, out)
        out.flush()
        if out.tell() == 0:
            return walker.counts
        with mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ) as inflated:
            inner = _Walker(inflated, limits, walker.counts)
            with contextlib.suppress(_Unreadable):
                inner.dataset(0, inner.size, False, LITTLE)
    return walker.counts


def structure_counts(path: Path, limits: StructureLimits = DEFAULT_STRUCTURE_LIMITS) -> Counts:
    """What the file at ``path`` holds as pydicom will read it; raises StructureRefused, saying
    which cap, as soon as a count passes its cap. A file pydicom cannot read (no DICOM
    prefix, cut short) is counted as far as it goes: pydicom says why it refuses it."""
    with open(path, "rb") as f:
        if f.seek(0, 2) < 132:
            return Counts()
        try:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError:  # a file system that cannot map files: read it
            f.seek(0)
            return _walk_file(path, f.read(), limits)
        with buffer:
            return _walk_file(path, buffer, limits)


def structure_problem(path: Path, limits: StructureLimits = DEFAULT_STRUCTURE_LIMITS) -> str:
    """Why pydicom must not read the file at ``path`` (a cap its structure passes), or ""."""
    try:
        structure_counts(path, limits)
    except StructureRefused as refused:
        return str(refused)
    except OSError:
        pass  # unreadable: pydicom says why
    return ""
