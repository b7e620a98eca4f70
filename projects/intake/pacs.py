"""Pulling studies from a PACS over DICOMweb (QIDO-RS to find, WADO-RS to retrieve).

The source is configured with ``PACS_DICOMWEB_URL`` (and optional basic-auth credentials). The
instances are saved exactly as the PACS sent them and then go through the same ingest as any
upload, so a pulled study is checked, sorted and stored like every other.
"""

import email.parser
import email.policy
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth
from django.conf import settings
from requests.auth import HTTPBasicAuth

from annotator.core.errors import InvalidInput
from projects.intake.ingest import ImportReport, studies_import
from projects.models import Project

STUDY_FIELDS = {
    "0020000D": "study_instance_uid",
    "00100020": "patient_id",
    "00100010": "patient_name",
    "00080020": "study_date",
    "00081030": "description",
    "00080050": "accession_number",
    "00080061": "modalities",
    "00201208": "instances",
}


@dataclass(frozen=True)
class PacsSource:
    url: str
    username: str = ""
    password: str = ""

    @classmethod
    def configured(cls) -> "PacsSource":
        if not settings.PACS_DICOMWEB_URL:
            raise InvalidInput("no PACS is configured: set PACS_DICOMWEB_URL")
        return cls(
            settings.PACS_DICOMWEB_URL,
            settings.PACS_DICOMWEB_USERNAME,
            settings.PACS_DICOMWEB_PASSWORD,
        )

    def session(self) -> requests.Session:
        if self.username:
            return create_session_from_auth(HTTPBasicAuth(self.username, self.password))
        return requests.Session()

    def client(self) -> DICOMwebClient:
        return DICOMwebClient(url=self.url.rstrip("/"), session=self.session())


def _values(study: dict[str, Any], tag: str) -> list[Any]:
    element = study.get(tag) or {}
    values = element.get("Value") or []
    if element.get("vr") == "PN":
        values = [v.get("Alphabetic", "") for v in values if isinstance(v, dict)]
    return [v for v in values if v is not None]


def _study(study: dict[str, Any]) -> dict[str, Any]:
    """One QIDO-RS study as the API answers it: every field present, text "" when the PACS
    sent none (several values: joined by "\\", as DICOM writes them), the modalities a list,
    the instance count a number or None."""
    out: dict[str, Any] = {
        name: "\\".join(str(v) for v in _values(study, tag))
        for tag, name in STUDY_FIELDS.items()
        if name not in ("modalities", "instances")
    }
    out["modalities"] = [str(v) for v in _values(study, "00080061")]
    counts = _values(study, "00201208")
    try:
        out["instances"] = int(counts[0]) if counts else None
    except (TypeError, ValueError):
        out["instances"] = None
    return out


# The most studies one search returns (a page); the next ones are asked for with ``offset``.
MAX_STUDIES_PAGE = 100


@dataclass(frozen=True)
class StudyPage:
    studies: list[dict[str, Any]]
    offset: int
    limit: int
    more: bool  # the PACS has studies past this page (ask again from offset + limit)


def pacs_find_studies(
    *,
    source: PacsSource,
    query: dict[str, str] | None = None,
    limit: int = MAX_STUDIES_PAGE,
    offset: int = 0,
) -> StudyPage:
    """QIDO-RS study search (standard attribute filters such as PatientID, StudyDate), one page.

    ``limit`` and ``offset`` go to the PACS as QIDO-RS's own; one study more than the page is
    asked for, to tell whether there is a next page without counting them all.
    """
    limit = max(1, min(limit, MAX_STUDIES_PAGE))
    offset = max(0, offset)
    try:
        found = source.client().search_for_studies(
            search_filters=query or {}, limit=limit + 1, offset=offset or None
        )
    except requests.RequestException as exc:
        raise InvalidInput(f"the PACS at {source.url} did not answer the search: {exc}") from exc
    studies = [_study(study) for study in found[:limit]]
    return StudyPage(studies, offset, limit, more=len(found) > limit)


def _parts(response: requests.Response) -> Iterator[bytes]:
    """The bodies of a multipart/related response."""
    header = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        header + response.content
    )
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield payload


def pacs_download_study(*, source: PacsSource, study_uid: str, folder: Path) -> int:
    """Save every instance of the study as the PACS sends it (stored transfer syntax)."""
    base = source.url.rstrip("/")
    with source.session() as session:
        series = session.get(
            f"{base}/studies/{study_uid}/series",
            headers={"Accept": "application/dicom+json"},
            timeout=60,
        )
        if series.status_code not in (204, 404):
            series.raise_for_status()
        entries = series.json() if series.status_code == 200 and series.content.strip() else []
        if not entries:
            raise InvalidInput(f"study {study_uid} is not on the PACS")
        count = 0
        for entry in entries:
            series_uid = entry["0020000E"]["Value"][0]
            response = session.get(
                f"{base}/studies/{study_uid}/series/{series_uid}",
                headers={
                    "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'
                },
                timeout=600,
            )
            response.raise_for_status()
            for body in _parts(response):
                count += 1
                (folder / f"{series_uid}-{count:06d}.dcm").write_bytes(body)
    return count


def pacs_import(
    *, project: Project, study_uids: list[str], source: PacsSource | None = None
) -> ImportReport:
    """Pull the studies and import them into ``project``; returns the ingest report."""
    source = source or PacsSource.configured()
    with tempfile.TemporaryDirectory(prefix="annotator-pacs-") as tmp:
        for uid in study_uids:
            folder = Path(tmp) / uid
            folder.mkdir()
            try:
                pacs_download_study(source=source, study_uid=uid, folder=folder)
            except requests.RequestException as exc:
                raise InvalidInput(f"the PACS at {source.url} failed to send {uid}: {exc}") from exc
        # the report names files "PACS/<study uid>/<series uid>-<n>.dcm", not by the temp folder
        return studies_import(project=project, paths=[Path(tmp)], display_names={Path(tmp): "PACS"})
