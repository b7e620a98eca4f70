"""STOW-RS: storing instances into a project (PS3.18 section 10.5), for its managers.

``POST /dicomweb/studies?project=<slug>`` (or ``/dicomweb/studies/{study}?project=<slug>``) with a
``multipart/related; type="application/dicom"`` body, one instance per part. The DICOMweb root
spans every project the user is a member of, so the project to store into is the required
``project`` query parameter (a project's slug); only its managers may store (403; a project the
user is not a member of is 404, as everywhere in the API).

The parts are received into a temporary folder, then go through the ingest service
(``projects.intake.ingest.studies_import``), exactly as an upload does: same checks, same
de-identification, same series-at-a-time atomic import, same report. The response is the Store
Instances Response dataset (application/dicom+json):

- ``ReferencedSOPSequence``: every instance stored (or already stored), with its ``RetrieveURL``;
- ``FailedSOPSequence``: every part refused, with the UIDs it holds (when readable) and a
  ``FailureReason``: ``0xC000`` (cannot understand: not DICOM, or a part that is not
  application/dicom), ``0xA900`` (its study is not the one in the URL), ``0x0110`` (processing
  failure: the import refused it; the import report's reason is in the ``Warning`` header).

Status: 200 when every part was stored, 202 when some were and others failed, 409 when none
was. A body that cannot be read as multipart/related is 400 (nothing is imported), a part type
other than application/dicom 415. Limits, checked while the body streams in, before its bytes
are kept: ``MAX_UPLOAD_BYTES`` for the whole body (its declared Content-Length first) and
``MAX_UPLOAD_FILES`` parts.
"""

import email.message
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import pydicom
from django.conf import settings
from django.http import HttpResponse
from rest_framework.exceptions import UnsupportedMediaType, ValidationError
from rest_framework.request import Request

from annotator.core.errors import InvalidInput
from annotator.core.rest import get_visible
from annotator.core.uploads import declared_limit
from annotator.imaging.dicom import FileOutcome, archive
from annotator.imaging.dicomweb import qido, wado
from annotator.imaging.dicomweb.multipart import DICOM
from annotator.imaging.dicomweb.views import DicomWebView, json_response, root_url
from annotator.imaging.pseudonyms import ProjectPseudonymizer
from annotator.models import Instance
from projects.access import require_role, visible_projects
from projects.intake.ingest import ALREADY_IMPORTED, IMPORTED, ImportReport, studies_import
from projects.models import Project, Role

CHUNK = 256 * 1024
MAX_PREAMBLE = 64 * 1024
MAX_PART_HEADERS = 16 * 1024
BODY = "body"

CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xA900
PROCESSING_FAILURE = 0x0110
STORED = (IMPORTED, ALREADY_IMPORTED, "duplicate")


def _bad_body(message: str) -> ValidationError:
    return ValidationError(
        {"detail": f"the body is not a multipart/related message: {message}", BODY: [message]}
    )


class _Stream:
    """The request body, read in chunks, counted against the upload limit."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.source = source
        self.limit = limit
        self.received = 0
        self.buffer = b"\r\n"  # so that the first boundary is found like every other one

    def fill(self) -> bool:
        chunk = self.source.read(CHUNK)
        if not chunk:
            return False
        self.received += len(chunk)
        if self.received > self.limit:
            raise ValidationError(
                {
                    "detail": f"the body is larger than the upload limit of {self.limit} bytes",
                    BODY: [f"at most {self.limit} bytes"],
                }
            )
        self.buffer += chunk
        return True

    def until(self, marker: bytes, cap: int, what: str) -> bytes:
        """The bytes before ``marker`` (consumed), at most ``cap`` of them."""
        while (at := self.buffer.find(marker)) < 0:
            if len(self.buffer) > cap + len(marker):
                raise _bad_body(f"{what} longer than {cap} bytes")
            if not self.fill():
                raise _bad_body(f"it ends inside {what}")
        head, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
        return head

    def copy_until(self, marker: bytes, out: IO[bytes]) -> None:
        """Copy the bytes before ``marker`` into ``out`` (consumed), however many."""
        while (at := self.buffer.find(marker)) < 0:
            keep = len(marker) - 1
            if len(self.buffer) > keep:
                out.write(self.buffer[:-keep])
                self.buffer = self.buffer[-keep:]
            if not self.fill():
                raise _bad_body("it ends inside a part (no closing boundary)")
        out.write(self.buffer[:at])
        self.buffer = self.buffer[at + len(marker) :]

    def take(self, n: int) -> bytes:
        while len(self.buffer) < n and self.fill():
            pass
        head, self.buffer = self.buffer[:n], self.buffer[n:]
        return head


@dataclass
class ReceivedPart:
    path: Path
    content_type: str  # the part's media type, lower case, without parameters ("" if none)


def boundary_of(content_type: str) -> str:
    """The boundary of a ``multipart/related; type="application/dicom"`` Content-Type."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    media_type = header.get_content_type()
    if media_type != "multipart/related":
        raise UnsupportedMediaType(
            media_type, 'expected multipart/related; type="application/dicom"'
        )
    part_type = str(header.get_param("type") or DICOM).lower()
    if part_type != DICOM:
        raise UnsupportedMediaType(
            part_type, "only application/dicom parts are stored (not metadata and bulk data)"
        )
    boundary = str(header.get_param("boundary") or "")
    if not 1 <= len(boundary) <= 70 or not re.fullmatch(r"[0-9A-Za-z'()+_,\-./:=? ]+", boundary):
        raise _bad_body("no valid boundary parameter in Content-Type")
    return boundary


def read_parts(
    source: IO[bytes], boundary: str, folder: Path, *, limit: int, max_parts: int
) -> list[ReceivedPart]:
    """Every part of the body, each saved to its own file in ``folder``; 400 on bad framing."""
    stream = _Stream(source, limit)
    delimiter = b"\r\n--" + boundary.encode("ascii")
    stream.until(delimiter, MAX_PREAMBLE, "the preamble")
    parts: list[ReceivedPart] = []
    while True:
        after = stream.take(2)
        if after == b"--":
            return parts
        stream.buffer = after + stream.buffer
        stream.until(b"\r\n", 1024, "a boundary line")  # transport padding, then CRLF
        headers = stream.take(2)
        if headers == b"\r\n":  # a part without headers
            headers = b""
        else:
            stream.buffer = headers + stream.buffer
            headers = stream.until(b"\r\n\r\n", MAX_PART_HEADERS, "a part's headers")
        if len(parts) == max_parts:
            raise ValidationError(
                {
                    "detail": f"the body has more than {max_parts} parts",
                    BODY: [f"at most {max_parts} parts in one request"],
                }
            )
        content_type = ""
        for line in headers.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                content_type = value.split(";")[0].strip().lower()
        path = folder / f"{len(parts) + 1:05d}.dcm"
        with open(path, "wb") as out:
            stream.copy_until(delimiter, out)
        parts.append(ReceivedPart(path, content_type))


# The response.


def _uids(path: Path) -> tuple[str, str, str]:
    """(SOP class, SOP instance, study) UIDs of a part, empty when it cannot be read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=64 * 1024)
        return (
            str(ds.get("SOPClassUID", "")),
            str(ds.get("SOPInstanceUID", "")),
            str(ds.get("StudyInstanceUID", "")),
        )
    except Exception:  # hostile bytes: whatever pydicom raises, the part is simply unreadable
        return "", "", ""


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _item(sop_class: str, sop: str) -> dict[str, Any]:
    return {"00081150": _ui(sop_class), "00081155": _ui(sop)}


@dataclass
class Outcome:
    sop_class: str
    sop: str
    stored: bool
    retrieve_url: str = ""
    failure: int = 0
    reason: str = ""


def _stored_instance(project: Project, sop: str) -> Instance | None:
    if project.deidentify:
        sop = ProjectPseudonymizer(project).uid(sop)
    return (
        Instance.objects.filter(series__study__project=project, sop_instance_uid=sop)
        .select_related("series", "series__study")
        .first()
    )


def _imported_outcome(
    project: Project, outcome: FileOutcome | None, sop_class: str, sop: str, root: str
) -> Outcome:
    """A part's outcome from the import report's entry for its file."""
    if outcome is None:
        return Outcome(sop_class, sop, False, failure=CANNOT_UNDERSTAND, reason="not DICOM")
    if outcome.status in STORED:
        instance = _stored_instance(project, sop)
        if instance is not None:
            url = f"{root}/{wado.instance_path(instance)}"
            return Outcome(sop_class, sop, True, retrieve_url=url)
        if outcome.status == IMPORTED:  # a label object: its regions became lesions
            return Outcome(sop_class, sop, True)
    reason = outcome.reason or outcome.status
    if outcome.status == ALREADY_IMPORTED:
        reason = "its series is already in the project: instances are not added to it"
    return Outcome(sop_class, sop, False, failure=PROCESSING_FAILURE, reason=reason)


def store_instances(
    *, project: Project, parts: list[ReceivedPart], study: str | None, root: str
) -> list[Outcome]:
    """Import the parts through the ingest service; one outcome per part, in order."""
    outcomes: list[Outcome | None] = []
    paths, names = [], {}
    uids = [_uids(part.path) for part in parts]
    for index, (part, (sop_class, sop, part_study)) in enumerate(zip(parts, uids, strict=True), 1):
        if part.content_type not in ("", DICOM) or not sop or archive.is_zip(part.path):
            # only DICOM instances go to the import: it would open a zip archive, for one
            outcomes.append(
                Outcome(sop_class, sop, False, failure=CANNOT_UNDERSTAND, reason="not DICOM")
            )
        elif study is not None and part_study and part_study != study:
            reason = f"its study {part_study} is not the study of the URL"
            outcomes.append(Outcome(sop_class, sop, False, failure=STUDY_MISMATCH, reason=reason))
        else:
            outcomes.append(None)
            paths.append(part.path)
            names[part.path] = f"part {index}"
    report = ImportReport()
    if paths:
        report = studies_import(project=project, paths=paths, display_names=names)
    by_name = {f.source: f for f in report.files}
    for index in range(1, len(parts) + 1):
        if outcomes[index - 1] is None:
            sop_class, sop, _ = uids[index - 1]
            outcome = by_name.get(f"part {index}")
            outcomes[index - 1] = _imported_outcome(project, outcome, sop_class, sop, root)
    return [o for o in outcomes if o is not None]


def response_body(outcomes: list[Outcome], study_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if study_url:
        body["00081190"] = {"vr": "UR", "Value": [study_url]}
    failed = [o for o in outcomes if not o.stored]
    stored = [o for o in outcomes if o.stored]
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {**_item(o.sop_class, o.sop), "00081197": {"vr": "US", "Value": [o.failure]}}
                for o in failed
            ],
        }
    if stored:
        items = []
        for o in stored:
            item = _item(o.sop_class, o.sop)
            if o.retrieve_url:
                item["00081190"] = {"vr": "UR", "Value": [o.retrieve_url]}
            items.append(item)
        body["00081199"] = {"vr": "SQ", "Value": items}
    return dict(sorted(body.items()))


def _warning(outcomes: list[Outcome]) -> str:
    """The failures' reasons, as one HTTP Warning header (RFC 7234 code 299)."""
    text = "; ".join(f"{o.sop or 'unreadable part'}: {o.reason}" for o in outcomes if not o.stored)
    text = text.encode("latin-1", "replace").decode("latin-1").replace('"', "'")
    return f'299 - "{text[:2000]}"'


class StowMixin(DicomWebView):
    def post(self, request: Request, study: str | None = None) -> HttpResponse:
        slug = request.query_params.get("project", "")
        if not slug:
            raise InvalidInput(
                "the project to store into is the project query parameter (its slug)",
                fields={"project": ["required"]},
            )
        user = self.user()
        project = get_visible(visible_projects(user), slug=slug)
        require_role(user, project, Role.MANAGER)
        boundary = boundary_of(request.content_type or "")
        limit = int(settings.MAX_UPLOAD_BYTES)
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > declared_limit():
            raise ValidationError(
                {
                    "detail": f"the body declares {declared} bytes, more than the upload limit "
                    f"of {limit} bytes: nothing was read",
                    BODY: [f"at most {limit} bytes"],
                }
            )
        root = root_url(request)
        with tempfile.TemporaryDirectory(prefix="annotator-stow-") as tmp:
            parts = read_parts(
                cast(IO[bytes], request._request),  # the raw body, streamed: never loaded whole
                boundary,
                Path(tmp),
                limit=declared_limit(),
                max_parts=int(settings.MAX_UPLOAD_FILES),
            )
            if not parts:
                raise _bad_body("it holds no part")
            outcomes = store_instances(project=project, parts=parts, study=study, root=root)
        stored = sum(o.stored for o in outcomes)
        study_url = None
        if study is not None and stored:
            stored_study = ProjectPseudonymizer(project).uid(study) if project.deidentify else study
            study_url = f"{root}/studies/{stored_study}"
        response = json_response(response_body(outcomes, study_url))
        if stored == len(outcomes):
            response.status_code = 200
        else:
            response.status_code = 202 if stored else 409
            response["Warning"] = _warning(outcomes)
        return response


class StudiesSearchOrStore(qido.StudiesSearch, StowMixin):
    """``/studies``: QIDO-RS search (GET), STOW-RS (POST)."""


class StudyRetrieveOrStore(wado.StudyRetrieve, StowMixin):
    """``/studies/{study}``: WADO-RS retrieve (GET), STOW-RS into that study (POST)."""
