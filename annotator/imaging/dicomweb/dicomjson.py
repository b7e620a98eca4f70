"""Datasets as DICOM JSON (PS3.18 Annex F), leniently: every attribute is kept as it is stored.

pydicom's ``Dataset.to_json_dict(suppress_invalid_tags=True)`` switches to strict reading and
drops every attribute whose value breaks a VR rule: an MR series written with 17-character DS
values lost its PixelSpacing and ImagePositionPatient, and a viewer cannot place a slice without
them. Here values are read with pydicom's default (warn, never refuse), as Orthanc serves them,
and an element pydicom cannot convert at all (a DS that is not a number) is sent with its stored
text. Empty values have no ``"Value"`` key (F.2.5), empty sequences included.
"""

from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

TEXT_ENCODING = "latin-1"  # stored bytes of an unconvertible value, one byte per character

BulkHandler = Callable[[DataElement], str]


def dataset_json(
    ds: Dataset,
    bulk_data_threshold: int = 1024,
    bulk_data_element_handler: BulkHandler | None = None,
    only: set[int] | None = None,
) -> dict[str, Any]:
    """``ds`` as a DICOM JSON object (tags as 8 upper-case hex digits, in tag order); ``only``:
    these top-level tags alone."""
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset reads every element
        if only is not None and int(tag) not in only:
            continue
        key = f"{int(tag):08X}"
        try:
            element = ds[tag]
        except Exception:  # the stored bytes do not convert to the VR's Python type
            out[key] = _stored_text(ds.get_item(tag))
            continue
        if element.VR == "SQ":
            items = [
                dataset_json(item, bulk_data_threshold, bulk_data_element_handler)
                for item in element.value or []
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        try:
            entry = element.to_json_dict(bulk_data_element_handler, bulk_data_threshold)
        except Exception:  # e.g. a DS that is no number: as stored
            entry = _stored_text(element)
        if entry.get("Value") == []:
            del entry["Value"]
        out[key] = entry
    return out


def _stored_text(element: DataElement | RawDataElement) -> dict[str, Any]:
    """An element's value as its stored strings, padding removed."""
    vr = str(element.VR or _dictionary_vr(int(element.tag)))
    value = element.value
    if isinstance(value, bytes):
        text = value.decode(TEXT_ENCODING)
        items = text.split("\\") if text.strip(" \x00") else []
    elif isinstance(value, str | int | float):
        items = [str(value)]
    else:
        items = [str(v) for v in value or []]
    items = [item.strip(" \x00") for item in items]
    entry: dict[str, Any] = {"vr": vr}
    if any(items):
        entry["Value"] = items
    return entry


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"
