"""QIDO-RS: search for studies, series and instances (PS3.18 section 10.6).

Matching (keywords or 8-hex tags): PatientID, PatientName, AccessionNumber, StudyDescription,
SeriesDescription with ``*`` / ``?`` wildcards (PatientName case-insensitively); UID lists
(``a,b`` or ``a\\b``) for StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID;
StudyDate as ``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-``;
ModalitiesInStudy / Modality (a list matches any); SeriesNumber, InstanceNumber. ``limit``,
``offset``, ``includefield`` (a keyword, tag or ``all``; every attribute known without opening
files is always returned) and ``fuzzymatching`` are accepted. Other valid attributes are not
matched: they are named in a ``Warning`` header, as PS3.18 allows. Results are ordered by upload.
"""

import re
from collections import defaultdict
from datetime import date
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import HttpResponse
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.request import Request

from annotator.dicomweb import lookups  # noqa: F401 - registers the wildcard lookups
from annotator.dicomweb.views import (
    DicomWebView,
    accepts_json,
    json_response,
    root_url,
    series_or_404,
    studies_or_404,
    visible_instances,
    visible_series,
    visible_studies,
)
from annotator.models import Instance, Series, Study

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
        # SQL pattern matching (annotator.dicomweb.lookups), never a regex: linear in the value.
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

    def response(self, body: list[dict[str, Any]]) -> HttpResponse:
        headers = {}
        if self.ignored:
            names = ", ".join(sorted(set(self.ignored)))
            headers["Warning"] = f'299 annotator "The attributes {names} were not matched"'
        return json_response(body, headers)


def attr(keyword: str, value: Any) -> tuple[str, dict[str, Any]]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    vr = dictionary_VR(tag)
    entry: dict[str, Any] = {"vr": vr}
    values = value if isinstance(value, list) else [value]
    values = [v for v in values if v not in (None, "")]
    if values:
        if vr == "PN":
            entry["Value"] = [{"Alphabetic": str(v)} for v in values]
        elif vr == "DA":
            entry["Value"] = [v.strftime("%Y%m%d") if isinstance(v, date) else v for v in values]
        else:
            entry["Value"] = values
    return f"{tag:08X}", entry


def _dataset(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(sorted(attr(keyword, value) for keyword, value in pairs))


def study_attributes(study: Study, base: str, modalities: list[str]) -> list[tuple[str, Any]]:
    return [
        ("StudyDate", study.study_date),
        ("StudyTime", None),
        ("AccessionNumber", study.accession_number),
        ("InstanceAvailability", "ONLINE"),
        ("ModalitiesInStudy", modalities),
        ("ReferringPhysicianName", None),
        ("StudyDescription", study.description[:64]),
        ("PatientName", study.patient_name),
        ("PatientID", study.patient_id),
        ("PatientBirthDate", None),
        ("PatientSex", None),
        ("StudyInstanceUID", study.study_instance_uid),
        ("StudyID", None),
        ("RetrieveURL", f"{base}/studies/{study.study_instance_uid}"),
    ]


def series_attributes(series: Series, base: str) -> list[tuple[str, Any]]:
    study_uid = series.study.study_instance_uid
    return [
        ("Modality", series.modality),
        ("SeriesDescription", series.description[:64]),
        ("SeriesInstanceUID", series.series_instance_uid),
        ("SeriesNumber", series.series_number),
        ("StudyInstanceUID", study_uid),
        ("RetrieveURL", f"{base}/studies/{study_uid}/series/{series.series_instance_uid}"),
    ]


def _modalities(study_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    pairs = (
        Series.objects.filter(study_id__in=study_ids)
        .values_list("study_id", "modality")
        .distinct()
        .order_by("study_id", "modality")
    )
    for study_id, modality in pairs:
        found[study_id].append(modality)
    return found


class QidoView(DicomWebView):
    def check_accept(self) -> None:
        if not accepts_json(self.request):
            raise NotAcceptable("QIDO-RS answers application/dicom+json")


class StudiesSearch(QidoView):
    def get(self, request: Request) -> HttpResponse:
        self.check_accept()
        query = Query(request, STUDY_FIELDS)
        studies = (
            visible_studies(self.user())
            .filter(pk__in=Study.objects.filter(query.filters).values("pk"))
            .annotate(
                n_series=Count("series", distinct=True),
                n_instances=Count("series__instances", distinct=True),
            )
            .order_by("pk")
        )
        found = query.page(studies)
        modalities = _modalities([s.pk for s in found])
        base = root_url(request)
        body = [
            _dataset(
                [
                    *study_attributes(study, base, modalities.get(study.pk, [])),
                    ("NumberOfStudyRelatedSeries", study.n_series),
                    ("NumberOfStudyRelatedInstances", study.n_instances),
                ]
            )
            for study in found
        ]
        return query.response(body)


class SeriesSearch(QidoView):
    def get(self, request: Request, study: str | None = None) -> HttpResponse:
        self.check_accept()
        user = self.user()
        if study is not None:
            studies_or_404(user, study)
        query = Query(request, SERIES_LEVEL)
        found_series = visible_series(user).filter(
            pk__in=Series.objects.filter(query.filters).values("pk")
        )
        if study is not None:
            found_series = found_series.filter(study__study_instance_uid=study)
        found = query.page(
            found_series.select_related("study")
            .annotate(n_instances=Count("instances"))
            .order_by("pk")
        )
        base = root_url(request)
        modalities = _modalities([s.study_id for s in found]) if study is None else {}
        body = []
        for series in found:
            pairs = [
                *series_attributes(series, base),
                ("NumberOfSeriesRelatedInstances", series.n_instances),
            ]
            if study is None:
                study_pairs = study_attributes(series.study, base, modalities[series.study_id])
                pairs += [p for p in study_pairs if p[0] not in ("RetrieveURL",)]
            body.append(_dataset(pairs))
        return query.response(body)


class InstancesSearch(QidoView):
    def get(
        self, request: Request, study: str | None = None, series: str | None = None
    ) -> HttpResponse:
        self.check_accept()
        user = self.user()
        if series is not None:
            assert study is not None
            series_or_404(user, study, series)
        elif study is not None:
            studies_or_404(user, study)
        query = Query(request, INSTANCE_LEVEL)
        instances = visible_instances(user).filter(
            pk__in=Instance.objects.filter(query.filters).values("pk")
        )
        if study is not None:
            instances = instances.filter(series__study__study_instance_uid=study)
        if series is not None:
            instances = instances.filter(series__series_instance_uid=series)
        found = query.page(
            instances.select_related("series", "series__study").order_by(
                "series_id", "frame_offset", "pk"
            )
        )
        base = root_url(request)
        body = []
        for instance in found:
            s = instance.series
            pairs = [
                ("SOPClassUID", instance.sop_class_uid),
                ("SOPInstanceUID", instance.sop_instance_uid),
                ("InstanceNumber", instance.instance_number),
                ("NumberOfFrames", instance.number_of_frames),
                ("AvailableTransferSyntaxUID", instance.transfer_syntax_uid),
                *[p for p in series_attributes(s, base) if p[0] != "RetrieveURL"],
                *[
                    p
                    for p in study_attributes(s.study, base, [s.modality])
                    if p[0] not in ("RetrieveURL", "ModalitiesInStudy")
                ],
                (
                    "RetrieveURL",
                    f"{base}/studies/{s.study.study_instance_uid}/series/"
                    f"{s.series_instance_uid}/instances/{instance.sop_instance_uid}",
                ),
            ]
            body.append(_dataset(pairs))
        return query.response(body)
