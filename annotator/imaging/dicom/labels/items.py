"""Reading a label object's sequences and numbers without building what it declares.

pydicom parses a sequence whole the first time it is touched, and keeps it: a few megabytes of
RTSTRUCT or SEG declaring 100,000 ROIs or segments cost seconds and hundreds of megabytes before
any count could be checked, and ContourData becomes one Python object per number. Here a
sequence still in its encoded form is read one item at a time (the item is dropped by the
caller, nothing is kept in the dataset), so a count is refused after ``limit`` items whatever the
object declares; and a decimal-string value is counted in its bytes, then parsed by numpy.
"""

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_sequence_item
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from annotator.imaging.dicom.labels.common import LabelError, TooLarge

UNDEFINED_LENGTH = 0xFFFFFFFF


def items(ds: Dataset, keyword: str, limit: int, what: str) -> Iterator[Dataset]:
    """The items of the sequence ``keyword`` of ``ds``, one at a time; raises TooLarge (with
    ``what``, e.g. "the SEG declares more than 256 segments") once there are more than ``limit``.

    An encoded sequence (pydicom keeps one raw until it is used) is parsed item by item from
    its bytes; one pydicom has already parsed (undefined length, or built in memory) is walked.
    """
    element = ds.get_item(keyword) if keyword in ds else None
    if element is None:
        return
    if (
        isinstance(element, RawDataElement)
        and isinstance(element.value, bytes)
        and element.length != UNDEFINED_LENGTH
    ):
        source: Iterator[Dataset] = _read_items(element, ds)
    else:
        value = ds[keyword].value
        if value in (None, ""):
            return
        if not isinstance(value, Sequence):
            raise LabelError(f"{keyword} is not a sequence")
        source = iter(value)
    for count, item in enumerate(source, start=1):
        if count > limit:
            raise TooLarge(what)
        yield item


class ItemBudget:
    """Items of several sequences read within one ``limit`` in all (an object's referenced-image
    lists); past it, TooLarge with ``what``."""

    def __init__(self, limit: int, what: str) -> None:
        self.left = limit
        self.what = what
        # Every image read by ``images``: SOP Instance UID -> Referenced SOP Class UID.
        self.sop_classes: dict[str, str] = {}

    def items(self, ds: Dataset, keyword: str) -> list[Dataset]:
        found = list(items(ds, keyword, self.left, self.what))
        self.left -= len(found)
        return found

    def images(self, references: list[Dataset]) -> set[str]:
        """The Referenced SOP Instance UIDs of image reference items (empty ones left out);
        each one's Referenced SOP Class UID is kept in ``sop_classes``."""
        uids: set[str] = set()
        for image in references:
            uid = str(image.get("ReferencedSOPInstanceUID", "") or "")
            if uid:
                uids.add(uid)
                sop_class = str(image.get("ReferencedSOPClassUID", "") or "")
                self.sop_classes[uid] = sop_class or self.sop_classes.get(uid, "")
        return uids


def first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of a sequence (a functional group macro holds one), reading no other."""
    if ds is None:
        return None
    return next(items(ds, keyword, 1 << 62, keyword), None)


def _read_items(element: RawDataElement, parent: Dataset) -> Iterator[Dataset]:
    value = element.value
    assert isinstance(value, bytes)
    buffer = io.BytesIO(value)
    encoding = parent._character_set  # what pydicom passes when it parses the sequence whole
    while buffer.tell() + 8 <= len(value):
        item = read_sequence_item(
            buffer, bool(element.is_implicit_VR), bool(element.is_little_endian), encoding
        )
        if item is None:  # a sequence delimiter
            return
        yield item


def value_count(ds: Dataset, keyword: str) -> int:
    """How many values a multi-valued element holds, counted without parsing them (for an
    encoded decimal string: its backslashes)."""
    element = ds.get_item(keyword) if keyword in ds else None
    if element is None:
        return 0
    if isinstance(element, RawDataElement) and isinstance(element.value, bytes):
        value = element.value  # counted in place: a copy of a hostile value is no small thing
        if len(value) <= 2 and not value.strip(b" \0"):
            return 0
        return value.count(b"\\") + 1
    return len(_values(ds[keyword].value))


def decimals(ds: Dataset, keyword: str, what: str) -> np.ndarray:
    """A decimal-string (DS) multi-value as float64, parsed by numpy from its bytes (pydicom
    would build a Python object per number). Raises LabelError for text that is not numbers;
    values that are not finite are the caller's to refuse."""
    element = ds.get_item(keyword) if keyword in ds else None
    if element is None:
        return np.empty(0)
    if isinstance(element, RawDataElement) and isinstance(element.value, bytes):
        try:
            return np.fromstring(element.value.strip(b" \0"), dtype=float, sep="\\")
        except ValueError:
            raise LabelError(f"{what}: {keyword} is not a list of numbers") from None
    try:
        return np.asarray([float(v) for v in _values(ds[keyword].value)], dtype=float)
    except (TypeError, ValueError):
        raise LabelError(f"{what}: {keyword} is not a list of numbers") from None


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
