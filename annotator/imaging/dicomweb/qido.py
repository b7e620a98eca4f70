"""QIDO-RS: search for studies, series and instances (PS3.18 section 10.6).

The search views and the results they answer; the query parameters (matching, paging,
``includefield``) are read by ``query``. Results are ordered by upload, one per UID (a study in
two of the user's projects is found once), and hold PS3.18 table 6.7.1-2's attributes: what the
database knows, and the rest (StudyTime, PatientSex... for studies; Rows, Columns, BitsAllocated
for instances) from the first instance's header (studies, series) or the series' cached metadata
(instances). ``includefield`` (a keyword or tag, repeated or comma-separated) adds an attribute
from there; ``all`` adds the Patient and General Study modules (studies), the General Series
module (series), the whole header but Pixel Data (instances).
"""

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from django.core.cache import cache
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponse
from pydicom.datadict import dictionary_VR, tag_for_keyword
from rest_framework.exceptions import NotAcceptable
from rest_framework.request import Request

from annotator.imaging.dicomweb.dicomjson import dataset_json
from annotator.imaging.dicomweb.files import read_instance_header
from annotator.imaging.dicomweb.query import (
    INSTANCE_LEVEL,
    SERIES_LEVEL,
    STUDY_FIELDS,
    Query,
    tag_keys,
)
from annotator.imaging.dicomweb.views import (
    DicomWebView,
    accepts_json,
    first_per_uid,
    json_response,
    root_url,
    series_or_404,
    studies_or_404,
    visible_instances,
    visible_series,
    visible_studies,
)
from annotator.imaging.dicomweb.wado import HUGE, METADATA_VERSION, series_metadata
from annotator.models import Instance, Series, Study

log = logging.getLogger(__name__)

# PS3.18 table 6.7.1-2 attributes the database does not hold: read from the first instance's
# header (studies), from the series' cached metadata (instances).
STUDY_HEADER = [
    "StudyTime",
    "ReferringPhysicianName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
]
INSTANCE_HEADER = ["Rows", "Columns", "BitsAllocated", "NumberOfFrames"]
HEADER_CACHE_S = 7 * 24 * 3600
# ``includefield=all``: the Patient and General Study modules' attributes (studies), the General
# Series module's (series); every attribute of the header (instances).
STUDY_ALL = [
    *STUDY_HEADER,
    "IssuerOfPatientID",
    "OtherPatientIDsSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "EthnicGroup",
    "PatientComments",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "AdmittingDiagnosesDescription",
    "TimezoneOffsetFromUTC",
]
SERIES_ALL = [
    "SeriesDate",
    "SeriesTime",
    "Laterality",
    "PerformingPhysicianName",
    "ProtocolName",
    "OperatorsName",
    "BodyPartExamined",
    "PatientPosition",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepDescription",
    "RequestAttributesSequence",
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "StationName",
    "FrameOfReferenceUID",
]
# What the cache keeps of a study's or series' first instance (a few hundred bytes).
CACHED_KEYS = tag_keys([*STUDY_HEADER, *STUDY_ALL, *SERIES_ALL])


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
    """What the database knows of a study (the rest of PS3.18's attributes: ``STUDY_HEADER``)."""
    return [
        ("StudyDate", study.study_date),
        ("AccessionNumber", study.accession_number),
        ("InstanceAvailability", "ONLINE"),
        ("ModalitiesInStudy", modalities),
        ("StudyDescription", study.description[:64]),
        ("PatientName", study.patient_name),
        ("PatientID", study.patient_id),
        ("StudyInstanceUID", study.study_instance_uid),
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


def _first_instance(outer: str) -> Subquery:
    """The pk of the first instance of each study (``outer="series__study"``) or series."""
    first = Instance.objects.filter(**{outer: OuterRef("pk")}).order_by(
        "series_id", "frame_offset", "pk"
    )
    return Subquery(first.values("pk")[:1])


def _headers(instance_ids: Iterable[int | None], keys: set[str]) -> dict[int, dict[str, Any]]:
    """The attributes ``keys`` of each instance's header, by instance pk. The study and series
    attributes (``CACHED_KEYS``) of an instance are kept in the cache, so that a study list reads
    each first instance's file once, not at every search; other keys read the file. A file that
    cannot be read gives nothing: the search still answers."""
    ids = [i for i in instance_ids if i is not None]
    instances = list(Instance.objects.filter(pk__in=ids).only("pk", "storage_key"))
    extra = {int(key, 16) for key in keys - CACHED_KEYS}
    names = {i.pk: _header_cache_key(i) for i in instances}
    cached = cache.get_many(list(names.values()))
    found: dict[int, dict[str, Any]] = {}
    fresh: dict[str, dict[str, Any]] = {}
    for instance in instances:
        header = cached.get(names[instance.pk])
        if header is None or extra:
            try:
                dataset = read_instance_header(instance).dataset
            except Exception:
                log.exception("QIDO-RS: could not read the header of instance %s", instance.pk)
                dataset = None
            if dataset is not None and header is None:
                only = {int(key, 16) for key in CACHED_KEYS}
                header = fresh[names[instance.pk]] = dataset_json(dataset, HUGE, only=only)
            if dataset is not None and extra:
                header = {**(header or {}), **dataset_json(dataset, HUGE, only=extra)}
        if header is not None:
            found[instance.pk] = {key: entry for key, entry in header.items() if key in keys}
    if fresh:
        cache.set_many(fresh, HEADER_CACHE_S)
    return found


def _header_cache_key(instance: Instance) -> str:
    # A stored file never changes; a new file of the instance is a new key (and a new pk).
    digest = hashlib.sha256(instance.storage_key.encode()).hexdigest()[:16]
    return f"dicomweb-qido:{METADATA_VERSION}:{instance.pk}:{digest}"


def _answer(
    known: list[tuple[str, Any]], header: dict[str, Any], required: Iterable[str]
) -> dict[str, Any]:
    """One result: the header's attributes, the database's where it knows a value, and an empty
    attribute for each required one that neither has."""
    out = {key: entry for key, entry in header.items() if key != "7FE00010"}
    for key, entry in _dataset(known).items():
        if "Value" in entry or key not in out:
            out[key] = entry
    for keyword in required:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        out.setdefault(f"{tag:08X}", {"vr": dictionary_VR(tag)})
    return dict(sorted(out.items()))


class QidoView(DicomWebView):
    def check_accept(self) -> None:
        if not accepts_json(self.request):
            raise NotAcceptable("QIDO-RS answers application/dicom+json")


class StudiesSearch(QidoView):
    def get(self, request: Request) -> HttpResponse:
        self.check_accept()
        query = Query(request, STUDY_FIELDS)
        matching = visible_studies(self.user()).filter(
            pk__in=Study.objects.filter(query.filters).values("pk")
        )
        studies = (
            first_per_uid(matching, "study_instance_uid")
            .annotate(
                n_series=Count("series", distinct=True),
                n_instances=Count("series__instances", distinct=True),
                first_instance=_first_instance("series__study"),
            )
            .order_by("pk")
        )
        found = query.page(studies)
        modalities = _modalities([s.pk for s in found])
        keys = tag_keys(STUDY_HEADER) | query.include_keys(STUDY_ALL)
        headers = _headers([s.first_instance for s in found], keys)
        base = root_url(request)
        body = [
            _answer(
                [
                    *study_attributes(study, base, modalities.get(study.pk, [])),
                    ("NumberOfStudyRelatedSeries", study.n_series),
                    ("NumberOfStudyRelatedInstances", study.n_instances),
                ],
                headers.get(study.first_instance, {}),
                STUDY_HEADER,
            )
            for study in found
        ]
        return json_response(body, query.warning_headers())


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
            first_per_uid(found_series, "study__study_instance_uid", "series_instance_uid")
            .select_related("study")
            .annotate(n_instances=Count("instances"), first_instance=_first_instance("series"))
            .order_by("pk")
        )
        base = root_url(request)
        modalities = _modalities([s.study_id for s in found]) if study is None else {}
        keys = query.include_keys([*SERIES_ALL, *(STUDY_ALL if study is None else [])])
        if study is None:
            keys |= tag_keys(STUDY_HEADER)
        headers = _headers([s.first_instance for s in found], keys) if keys else {}
        body = []
        for series in found:
            pairs = [
                *series_attributes(series, base),
                ("NumberOfSeriesRelatedInstances", series.n_instances),
            ]
            required = []
            if study is None:
                study_pairs = study_attributes(series.study, base, modalities[series.study_id])
                pairs += [p for p in study_pairs if p[0] not in ("RetrieveURL",)]
                required = STUDY_HEADER
            body.append(_answer(pairs, headers.get(series.first_instance, {}), required))
        return json_response(body, query.warning_headers())


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
        unique = first_per_uid(
            instances,
            "series__study__study_instance_uid",
            "series__series_instance_uid",
            "sop_instance_uid",
        )
        found = query.page(
            unique.select_related("series", "series__study").order_by(
                "series_id", "frame_offset", "pk"
            )
        )
        base = root_url(request)
        keys = tag_keys(INSTANCE_HEADER) | query.include_keys(None)
        all_of_it = query.includes_all
        # Rows, Columns... of each instance: from its series' cached metadata, one file a series.
        metadata: dict[int, dict[str, dict[str, Any]]] = {}
        for s in {instance.series for instance in found}:
            try:
                entries = json.loads(series_metadata(s))
            except Exception:  # a file gone missing: the search still answers, without them
                log.exception("QIDO-RS: no metadata for series %s", s.pk)
                entries = []
            metadata[s.pk] = {e["00080018"]["Value"][0]: e for e in entries if "00080018" in e}
        body = []
        for instance in found:
            s = instance.series
            entry = metadata[s.pk].get(instance.sop_instance_uid, {})
            header = entry if all_of_it else {k: v for k, v in entry.items() if k in keys}
            pairs = [
                ("SOPClassUID", instance.sop_class_uid),
                ("SOPInstanceUID", instance.sop_instance_uid),
                ("InstanceNumber", instance.instance_number),
                ("InstanceAvailability", "ONLINE"),
                ("NumberOfFrames", instance.number_of_frames),
                ("AvailableTransferSyntaxUID", instance.transfer_syntax_uid),
                *[p for p in series_attributes(s, base) if p[0] != "RetrieveURL"],
                *[
                    p
                    for p in study_attributes(s.study, base, [s.modality])
                    if p[0] not in ("RetrieveURL", "ModalitiesInStudy", "InstanceAvailability")
                ],
                (
                    "RetrieveURL",
                    f"{base}/studies/{s.study.study_instance_uid}/series/"
                    f"{s.series_instance_uid}/instances/{instance.sop_instance_uid}",
                ),
            ]
            body.append(_answer(pairs, header, INSTANCE_HEADER))
        return json_response(body, query.warning_headers())
