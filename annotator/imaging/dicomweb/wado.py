"""WADO-RS: instances, metadata and frames (PS3.18 section 10.4).

Metadata is each instance's header as DICOM JSON (everything before Pixel Data; other binary
values inline), with ``AvailableTransferSyntaxUID`` (0008,3002) set to the stored syntax and Pixel
Data as a ``BulkDataURI`` naming the instance's frames resource (``.../frames/1,2,...,n``). A
series' metadata is built once and kept in storage as a derived file,
``<series prefix>/derived/dicomweb-metadata-<fingerprint>.json`` (the fingerprint changes when
the series' instances do), with a placeholder for the server's URL so that it serves any host.
"""

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, StreamingHttpResponse
from pydicom import dcmread
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.request import Request

from annotator.core import storage
from annotator.imaging.dicomweb import multipart
from annotator.imaging.dicomweb.dicomjson import dataset_json
from annotator.imaging.dicomweb.files import (
    Header,
    NoPixelData,
    iter_file,
    iter_frames,
    open_file,
    read_instance_header,
)
from annotator.imaging.dicomweb.views import (
    DicomWebView,
    accepts_json,
    first_per_uid,
    instance_or_404,
    json_response,
    root_url,
    series_or_404,
    studies_or_404,
)
from annotator.models import Instance, Series, Study

log = logging.getLogger(__name__)
BASE = "{{dicomweb}}"
HUGE = 1 << 62  # no bulk data threshold: only Pixel Data is sent by reference
# Part of the cached metadata's name: changes when the JSON built from the same files does.
METADATA_VERSION = "v2"


def instance_path(instance: Instance) -> str:
    series = instance.series
    return (
        f"studies/{series.study.study_instance_uid}/series/{series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )


def instance_json(instance: Instance, header: Header, base: str = BASE) -> dict[str, Any]:
    body = dataset_json(header.dataset, bulk_data_threshold=HUGE)
    body["00083002"] = {"vr": "UI", "Value": [header.transfer_syntax]}
    if header.pixel_vr is not None:
        frames = ",".join(str(n) for n in range(1, header.number_of_frames + 1))
        uri = f"{base}/{instance_path(instance)}/frames/{frames}"
        body["7FE00010"] = {"vr": header.pixel_vr, "BulkDataURI": uri}
    return dict(sorted(body.items()))


def _series_prefix(series: Series) -> str:
    prefix = series.original_prefix
    if prefix.endswith("/original/"):
        return prefix[: -len("original/")]
    return f"derived/series/{series.pk}/"


def series_metadata(series: Series) -> bytes:
    """The series' metadata JSON with ``BASE`` for the server's URL (cached in storage)."""
    instances = list(
        series.instances.select_related("series", "series__study").order_by("frame_offset", "pk")
    )
    fingerprint = hashlib.sha256(
        ";".join(
            f"{i.pk}:{i.sop_instance_uid}:{i.storage_key}:{i.size_bytes}" for i in instances
        ).encode()
    ).hexdigest()[:20]
    name = f"dicomweb-metadata-{METADATA_VERSION}-{fingerprint}.json"
    key = f"{_series_prefix(series)}derived/{name}"
    try:
        with default_storage.open(key, "rb") as f:
            return bytes(f.read())
    except (FileNotFoundError, OSError):
        pass
    body = json.dumps(
        [instance_json(i, read_instance_header(i)) for i in instances], separators=(",", ":")
    ).encode()
    try:
        storage.save_file(key, body)
    except Exception:  # a cache: serving the answer matters more than keeping it
        log.exception("could not cache the metadata of series %s", series.pk)
    return body


def warm_series_metadata(series: Series) -> None:
    """Builds the series' cached metadata now (after an import), so that the first viewer to open
    it does not wait for every instance's header to be read (0.5 s for a 134-slice CT). A failure
    is logged, not raised: the metadata is then built on its first request."""
    try:
        series_metadata(series)
    except Exception:
        log.exception("could not build the metadata of series %s ahead of time", series.pk)


def study_series(studies: QuerySet[Study]) -> QuerySet[Series]:
    """The series of a study's visible copies, one per series UID."""
    return first_per_uid(Series.objects.filter(study__in=studies), "series_instance_uid")


def _with_base(body: bytes, request: Request) -> bytes:
    return body.replace(BASE.encode(), root_url(request).encode())


def _concat(lists: Iterable[bytes]) -> bytes:
    inner = [body.strip()[1:-1].strip() for body in lists]
    return b"[" + b",".join(part for part in inner if part) + b"]"


class MetadataView(DicomWebView):
    def check_accept(self) -> None:
        if not accepts_json(self.request):
            raise NotAcceptable("metadata is application/dicom+json")


class StudyMetadata(MetadataView):
    def get(self, request: Request, study: str) -> HttpResponse:
        self.check_accept()
        studies = studies_or_404(self.user(), study)
        all_series = study_series(studies).order_by("pk")
        return json_response(_with_base(_concat(series_metadata(s) for s in all_series), request))


class SeriesMetadata(MetadataView):
    def get(self, request: Request, study: str, series: str) -> HttpResponse:
        self.check_accept()
        found = series_or_404(self.user(), study, series).order_by("pk")
        return json_response(_with_base(_concat(series_metadata(s) for s in found), request))


class InstanceMetadata(MetadataView):
    def get(self, request: Request, study: str, series: str, instance: str) -> HttpResponse:
        self.check_accept()
        found = instance_or_404(self.user(), study, series, instance)
        body = [instance_json(found, read_instance_header(found), root_url(request))]
        return json_response(body)


# Retrieving instances (multipart/related; type="application/dicom").


def _transcodable(stored: str) -> bool:
    """Whether an instance stored in ``stored`` can be sent in explicit VR little endian."""
    uid = UID(stored)
    if stored in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        return True
    if not uid.is_compressed:
        return False  # big endian (its OW values would need swapping) or unknown
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:  # no decoder exists for the syntax (MPEG, HEVC...)
        return False


def _transcoded(instance: Instance) -> Iterator[bytes]:
    """The instance in explicit VR little endian (decompressed; implicit VR made explicit)."""
    with open_file(instance) as f:
        ds = dcmread(f)
    if UID(ds.file_meta.TransferSyntaxUID).is_compressed:
        ds.decompress(generate_instance_uid=False)  # the same instance, another syntax
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    yield buffer.getvalue()


def _bulkdata_response(request: Request, instances: list[Instance]) -> StreamingHttpResponse:
    """Every frame of ``instances`` (multipart/related; type="application/octet-stream")."""
    accept = request.headers.get("Accept")
    formats = {}
    for syntax in {i.transfer_syntax_uid for i in instances}:
        negotiated = multipart.negotiate_frames(accept, syntax, count=0)
        if negotiated is None:
            raise NotAcceptable(
                f"frames stored in {syntax} can be sent as stored (transfer-syntax=*) or as "
                f"application/octet-stream in {ExplicitVRLittleEndian}"
            )
        formats[syntax] = negotiated[0]
    root = root_url(request)

    def parts() -> Iterator[multipart.Part]:
        for instance in instances:
            header = read_instance_header(instance)
            if header.pixel_vr is None:
                continue
            fmt = formats[instance.transfer_syntax_uid]
            numbers = list(range(1, header.number_of_frames + 1))
            part_type = f"{fmt.media_type}; transfer-syntax={fmt.transfer_syntax}"
            for number, data in zip(
                numbers, iter_frames(instance, header, numbers, fmt), strict=True
            ):
                location = f"{root}/{instance_path(instance)}/frames/{number}"
                yield multipart.Part(
                    part_type,
                    [data],
                    {"Content-Location": location, "Content-Length": str(len(data))},
                )

    boundary = multipart.new_boundary()
    return StreamingHttpResponse(
        multipart.stream(parts(), boundary),
        content_type=multipart.content_type(multipart.OCTET_STREAM, boundary),
    )


def _instances_response(request: Request, instances: list[Instance]) -> StreamingHttpResponse:
    if not instances:
        raise Http404("no instances")
    if multipart.wants_bulkdata(request.headers.get("Accept")):
        return _bulkdata_response(request, instances)
    syntaxes = multipart.negotiate_instances(request.headers.get("Accept"))
    if not syntaxes:
        raise NotAcceptable('instances are multipart/related; type="application/dicom"')
    plan = []
    for instance in instances:
        stored = instance.transfer_syntax_uid
        for syntax in syntaxes:
            if syntax is None:  # PS3.18's default, where it can be produced
                syntax = ExplicitVRLittleEndian if _transcodable(stored) else "*"
            if syntax in ("*", stored):
                plan.append((stored, iter_file(instance)))
                break
            if syntax == ExplicitVRLittleEndian and _transcodable(stored):
                plan.append((syntax, _transcoded(instance)))
                break
        else:
            raise NotAcceptable(
                f"instance {instance.sop_instance_uid} is stored in {stored}: it can be sent as "
                f"stored or in {ExplicitVRLittleEndian}"
            )
    boundary = multipart.new_boundary()
    parts = (
        multipart.Part(f"{multipart.DICOM}; transfer-syntax={ts}", chunks) for ts, chunks in plan
    )
    return StreamingHttpResponse(
        multipart.stream(parts, boundary),
        content_type=multipart.content_type(multipart.DICOM, boundary),
    )


def _instances_of(series: Iterable[Series]) -> list[Instance]:
    return list(
        Instance.objects.filter(series__in=list(series))
        .select_related("series", "series__study")
        .order_by("series_id", "frame_offset", "pk")
    )


class StudyRetrieve(DicomWebView):
    def get(self, request: Request, study: str) -> StreamingHttpResponse:
        studies = studies_or_404(self.user(), study)
        return _instances_response(request, _instances_of(study_series(studies)))


class SeriesRetrieve(DicomWebView):
    def get(self, request: Request, study: str, series: str) -> StreamingHttpResponse:
        found = series_or_404(self.user(), study, series)
        return _instances_response(request, _instances_of(found))


class InstanceRetrieve(DicomWebView):
    def get(
        self, request: Request, study: str, series: str, instance: str
    ) -> StreamingHttpResponse:
        found = instance_or_404(self.user(), study, series, instance)
        return _instances_response(request, [found])


# Frames.


def parse_frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(n < 1 for n in numbers):
        raise ValidationError({"frames": ["expected frame numbers (1-based), comma-separated"]})
    return numbers


class FramesRetrieve(DicomWebView):
    def get(
        self, request: Request, study: str, series: str, instance: str, frames: str
    ) -> HttpResponse | StreamingHttpResponse:
        numbers = parse_frame_numbers(frames)
        found = instance_or_404(self.user(), study, series, instance)
        header = read_instance_header(found)
        if header.pixel_vr is None:
            raise Http404("the instance holds no pixel data")
        if max(numbers) > header.number_of_frames:
            raise Http404(f"the instance has {header.number_of_frames} frame(s)")
        negotiated = multipart.negotiate_frames(
            request.headers.get("Accept"), header.transfer_syntax, count=len(numbers)
        )
        if negotiated is None:
            raise NotAcceptable(
                f"frames stored in {header.transfer_syntax} can be sent as stored "
                "(transfer-syntax=* or the stored syntax) or as application/octet-stream in "
                f"{ExplicitVRLittleEndian}; a single-part payload holds one frame only"
            )
        fmt, single = negotiated
        part_type = f"{fmt.media_type}; transfer-syntax={fmt.transfer_syntax}"
        if single:
            try:
                (data,) = iter_frames(found, header, numbers, fmt)
            except NoPixelData:
                log.exception("frame of instance %s", found.pk)
                raise
            return HttpResponse(data, content_type=part_type)
        boundary = multipart.new_boundary()

        def parts() -> Iterator[multipart.Part]:
            try:
                for data in iter_frames(found, header, numbers, fmt):
                    yield multipart.Part(part_type, [data])
            except NoPixelData:
                log.exception("frames of instance %s", found.pk)
                raise

        return StreamingHttpResponse(
            multipart.stream(parts(), boundary),
            content_type=multipart.content_type(fmt.media_type, boundary),
        )
