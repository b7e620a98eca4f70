"""QIDO-RS query parameters: matching keys as database filters, paging and ``includefield``.

Matching (keywords or 8-hex tags): PatientID, PatientName, AccessionNumber, StudyDescription,
SeriesDescription with ``*`` / ``?`` wildcards (PatientName case-insensitively; SQL patterns,
see ``lookups``); UID lists (``a,b`` or ``a\\b``) for StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID, SOPClassUID; StudyDate as ``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or
``YYYYMMDD-``; ModalitiesInStudy / Modality (a list matches any); SeriesNumber, InstanceNumber.
A value that cannot be matched is a ``ValidationError``. ``limit``, ``offset``,
``includefield`` and ``fuzzymatching`` are accepted. Other valid attributes are not matched:
``Query`` keeps them for a ``Warning`` header, as PS3.18 allows.
"""

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from django.db.models import Q, QuerySet
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from annotator.imaging.dicomweb import lookups  # noqa: F401 - registers the wildcard lookups

CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}
MAX_LIMIT = 10_000
MAX_OFFSET = 2**31 - 1
# Far above any DICOM value (a PN is at most 3 x 64 characters): a pattern costs its length
# times each value's length.
MAX_VALUE_CHARS = 1024
MAX_LIST_ITEMS = 1000
STUDY_FIELDS = {
    "PatientID": ("patient_id", "text"),
    "PatientName": ("patient_name", "name"),
    "AccessionNumber": ("accession_number", "text"),
    "StudyDescription": ("description", "text"),
    "StudyInstanceUID": ("study_instance_uid", "uid"),
    "StudyDate": ("study_date", "date"),
    "ModalitiesInStudy": ("series__modality", "list"),
}
SERIES_FIELDS = {
    "SeriesInstanceUID": ("series_instance_uid", "uid"),
    "Modality": ("modality", "list"),
    "SeriesNumber": ("series_number", "int"),
    "SeriesDescription": ("description", "text"),
}
INSTANCE_FIELDS = {
    "SOPInstanceUID": ("sop_instance_uid", "uid"),
    "SOPClassUID": ("sop_class_uid", "uid"),
    "InstanceNumber": ("instance_number", "int"),
}


def _under(prefix: str, fields: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {keyword: (prefix + field, kind) for keyword, (field, kind) in fields.items()}


SERIES_LEVEL = {**SERIES_FIELDS, **_under("study__", STUDY_FIELDS)}
INSTANCE_LEVEL = {
    **INSTANCE_FIELDS,
    **_under("series__", SERIES_FIELDS),
    **_under("series__study__", STUDY_FIELDS),
}


def tag_keys(keywords: Iterable[str]) -> set[str]:
    """The DICOM JSON keys (8 upper-case hex digits) of attribute keywords."""
    return {f"{tag_for_keyword(k):08X}" for k in keywords}


def _keyword(key: str) -> str | None:
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return keyword_for_tag(int(key, 16)) or None
    return key if tag_for_keyword(key) is not None else None


def _date(text: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise ValidationError({"StudyDate": [f"{text!r} is not a date (YYYYMMDD)"]}) from exc


def _items(key: str, value: str) -> list[str]:
    items = [v for v in re.split(r"[,\\]", value) if v]
    if len(items) > MAX_LIST_ITEMS:
        raise ValidationError({key: [f"at most {MAX_LIST_ITEMS} values"]})
    return items


def _match(key: str, field: str, kind: str, value: str) -> Q:
    """The filter of one matching key (``key``: as the client named it, for errors)."""
    if "\x00" in value:
        raise ValidationError({key: ["null characters are not allowed"]})
    if kind == "uid":
        return Q(**{f"{field}__in": _items(key, value)})
    if kind == "list":
        return Q(**{f"{field}__in": [v.upper() for v in _items(key, value)]})
    if len(value) > MAX_VALUE_CHARS:
        raise ValidationError({key: [f"at most {MAX_VALUE_CHARS} characters"]})
    if kind == "int":
        try:
            number = int(value)
        except ValueError as exc:
            raise ValidationError({key: [f"{value!r} is not an integer"]}) from exc
        if not -(2**31) <= number < 2**31:
            raise ValidationError({key: ["out of range"]})
        return Q(**{field: number})
    if kind == "date":
        value = value.replace(".", "").strip()
        if "-" not in value:
            return Q(**{field: _date(value)})
        lo, _, hi = value.partition("-")
        q = Q()
        if lo:
            q &= Q(**{f"{field}__gte": _date(lo)})
        if hi:
            q &= Q(**{f"{field}__lte": _date(hi)})
        return q
    insensitive = kind == "name"
    if "*" in value or "?" in value:
        # SQL pattern matching (annotator.imaging.dicomweb.lookups), never a regex: linear in
        # the value.
        lookup = "iwildcard" if insensitive else "wildcard"
        return Q(**{f"{field}__{lookup}": value})
    return Q(**{f"{field}__iexact" if insensitive else field: value})


class Query:
    """The matching keys, paging and included fields of one QIDO request."""

    def __init__(self, request: Request, fields: dict[str, tuple[str, str]]) -> None:
        self.filters = Q()
        self.ignored: list[str] = []
        self.include: set[str] = set()
        self.limit: int | None = None
        self.offset = 0
        for key in request.query_params:
            values = request.query_params.getlist(key)
            if key == "limit":
                self.limit = self._count(key, values[-1], maximum=MAX_LIMIT)
            elif key == "offset":
                self.offset = self._count(key, values[-1])
                if self.offset > MAX_OFFSET:
                    raise ValidationError({key: [f"at most {MAX_OFFSET}"]})
            elif key == "includefield":
                for value in values:
                    for item in re.split(r"[,\s]+", value):
                        if item and item != "all" and _keyword(item) is None:
                            raise ValidationError({"includefield": [f"unknown {item!r}"]})
                        self.include.add(item)
            elif key in CONTROL:
                continue
            else:
                keyword = _keyword(key)
                if keyword is None:
                    raise ValidationError({key: ["not a DICOM attribute keyword or tag"]})
                if keyword not in fields:
                    self.ignored.append(keyword)
                    continue
                field, kind = fields[keyword]
                value = values[-1]
                if value != "" and value != "*":
                    self.filters &= _match(key, field, kind, value)

    @property
    def includes_all(self) -> bool:
        return "all" in self.include

    def include_keys(self, level_all: Iterable[str] | None) -> set[str]:
        """The tags (as JSON keys) ``includefield`` names; ``all``: those of ``level_all``."""
        keys = tag_keys(_keyword(item) or item for item in self.include if item != "all")
        if self.includes_all and level_all is not None:
            keys |= tag_keys(level_all)
        return keys

    @staticmethod
    def _count(key: str, value: str, maximum: int | None = None) -> int:
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise ValidationError({key: ["expected a non-negative integer"]})
        return min(number, maximum) if maximum else number

    def page(self, queryset: QuerySet[Any]) -> list[Any]:
        end = self.offset + self.limit if self.limit is not None else None
        return list(queryset[self.offset : end])

    def warning_headers(self) -> dict[str, str]:
        """The ``Warning`` header naming the attributes that were not matched, if any."""
        headers = {}
        if self.ignored:
            names = ", ".join(sorted(set(self.ignored)))
            headers["Warning"] = f'299 annotator "The attributes {names} were not matched"'
        return headers
