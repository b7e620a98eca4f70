"""STOW-RS: storing instances into a project through the ingest service, by its managers only."""

import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydicom
import pytest
import requests
from django.core.files.storage import default_storage
from django.test import Client
from pydicom.data import get_testdata_file

from annotator.models import Instance, Series
from projects.intake.stow import CANNOT_UNDERSTAND, PROCESSING_FAILURE, STUDY_MISMATCH
from projects.models import Project

pytestmark = pytest.mark.django_db

BOUNDARY = "stow-test-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return Path(path)


def body(*parts: bytes, close: bool = True, part_type: str = "application/dicom") -> bytes:
    out = b""
    for part in parts:
        out += f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    return out + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


def token_session(user: Any) -> requests.Session:
    from knox.models import AuthToken

    session = requests.Session()
    _, token = AuthToken.objects.create(user=user)
    session.headers["Authorization"] = f"Token {token}"
    return session


def test_dicomweb_client_stores_instances_into_a_project(
    live_server: Any, workspace: dict[str, Any], make_project: Callable[..., Project]
) -> None:
    from dicomweb_client.api import DICOMwebClient

    project = workspace["project"]
    root = f"{live_server.url}/dicomweb"
    client = DICOMwebClient(root, session=token_session(workspace["manager"]))
    ct, mr = pydicom.dcmread(sample("CT_small.dcm")), pydicom.dcmread(sample("emri_small.dcm"))

    answer = client.store_instances([ct, mr], additional_params={"project": project.slug})
    assert "FailedSOPSequence" not in answer
    stored = {item.ReferencedSOPInstanceUID: item for item in answer.ReferencedSOPSequence}
    assert set(stored) == {ct.SOPInstanceUID, mr.SOPInstanceUID}
    assert stored[ct.SOPInstanceUID].ReferencedSOPClassUID == ct.SOPClassUID
    # the URL is built from the Host header, which dicomweb-client sends without the port
    url = urlsplit(stored[mr.SOPInstanceUID].RetrieveURL)
    assert (url.scheme, url.hostname) == ("http", "localhost")
    assert url.path == (
        f"/dicomweb/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}"
        f"/instances/{mr.SOPInstanceUID}"
    )
    # imported as an upload is: rows, the volume and a task per series, the file byte for byte
    series = Series.objects.get(study__project=project, series_instance_uid=mr.SeriesInstanceUID)
    assert series.volume.shape_zyx == (mr.NumberOfFrames, mr.Rows, mr.Columns)
    assert series.tasks.count() == 1
    (instance,) = Instance.objects.filter(series=series)
    with default_storage.open(instance.storage_key) as f:
        assert (
            hashlib.sha256(f.read()).digest()
            == hashlib.sha256(sample("emri_small.dcm").read_bytes()).digest()
        )
    back = client.retrieve_instance(mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.SOPInstanceUID)
    assert back.SOPInstanceUID == mr.SOPInstanceUID

    # stored again: already there, still a success (nothing duplicated)
    again = client.store_instances([mr], additional_params={"project": project.slug})
    assert [i.ReferencedSOPInstanceUID for i in again.ReferencedSOPSequence] == [mr.SOPInstanceUID]
    assert Series.objects.filter(series_instance_uid=mr.SeriesInstanceUID).count() == 1

    # into a named study: an instance of another study is refused (409: nothing stored)
    rle = pydicom.dcmread(sample("MR_small_RLE.dcm"))
    with pytest.raises(requests.HTTPError) as conflict:
        client.store_instances(
            [rle],
            study_instance_uid=ct.StudyInstanceUID,
            additional_params={"project": project.slug},
        )
    assert conflict.value.response.status_code == 409
    failed = pydicom.Dataset.from_json(conflict.value.response.json()).FailedSOPSequence
    assert [(f.ReferencedSOPInstanceUID, f.FailureReason) for f in failed] == [
        (rle.SOPInstanceUID, STUDY_MISMATCH)
    ]
    assert not Series.objects.filter(series_instance_uid=rle.SeriesInstanceUID).exists()

    # only the project's managers store; a project one is not a member of does not exist
    annotator = DICOMwebClient(root, session=token_session(workspace["annotator"]))
    stranger_project = make_project("gamma")
    for who, slug, code in (
        (annotator, project.slug, 403),
        (client, stranger_project.slug, 404),
        (client, "", 400),
    ):
        with pytest.raises(requests.HTTPError) as refused:
            who.store_instances([rle], additional_params={"project": slug} if slug else None)
        assert refused.value.response.status_code == code, slug
    assert not Series.objects.filter(series_instance_uid=rle.SeriesInstanceUID).exists()


@pytest.fixture
def manager(workspace: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(workspace["manager"])
    return client


def test_a_garbage_part_is_listed_as_failed_and_the_rest_stored(
    workspace: dict[str, Any], manager: Client
) -> None:
    url = f"/dicomweb/studies?project={workspace['project'].slug}"
    rle = pydicom.dcmread(sample("MR_small_RLE.dcm"))
    payload = body(b"\x00garbage" * 100, sample("MR_small_RLE.dcm").read_bytes())
    response = manager.post(url, payload, content_type=CONTENT_TYPE)
    assert response.status_code == 202, response.content[:300]
    assert response["Content-Type"] == "application/dicom+json"
    answer = pydicom.Dataset.from_json(response.json())
    (failed,) = answer.FailedSOPSequence
    assert failed.FailureReason == CANNOT_UNDERSTAND
    (stored,) = answer.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == rle.SOPInstanceUID
    assert response["Warning"] == '299 - "unreadable part: not DICOM"'
    assert Series.objects.filter(series_instance_uid=rle.SeriesInstanceUID).exists()

    # a new instance of a series already imported is not added to it: a processing failure
    extra = pydicom.dcmread(sample("MR_small_RLE.dcm"))
    extra.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    extra.save_as(buffer, enforce_file_format=True)
    late = manager.post(url, body(buffer.getvalue()), content_type=CONTENT_TYPE)
    assert late.status_code == 409
    (refused,) = pydicom.Dataset.from_json(late.json()).FailedSOPSequence
    assert (refused.ReferencedSOPInstanceUID, refused.FailureReason) == (
        extra.SOPInstanceUID,
        PROCESSING_FAILURE,
    )
    assert "already in the project" in late["Warning"]
    assert not Instance.objects.filter(sop_instance_uid=extra.SOPInstanceUID).exists()


def test_hostile_bodies_store_nothing(
    workspace: dict[str, Any], manager: Client, media_root: Path, settings: Any
) -> None:
    url = f"/dicomweb/studies?project={workspace['project'].slug}"
    good = sample("MR_small_RLE.dcm").read_bytes()
    series_before = Series.objects.count()
    files_before = stored_files(media_root)

    only_garbage = manager.post(url, body(b"\xff" * 5000, b""), content_type=CONTENT_TYPE)
    assert only_garbage.status_code == 409
    failures = pydicom.Dataset.from_json(only_garbage.json()).FailedSOPSequence
    assert [f.FailureReason for f in failures] == [CANNOT_UNDERSTAND, CANNOT_UNDERSTAND]

    # a zip archive holding an instance is not an instance: the import never opens it
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("inside.dcm", good)
    zipped = manager.post(url, body(packed.getvalue()), content_type=CONTENT_TYPE)
    assert zipped.status_code == 409
    (refused,) = pydicom.Dataset.from_json(zipped.json()).FailedSOPSequence
    assert refused.FailureReason == CANNOT_UNDERSTAND

    # a valid instance in a body cut short: the body is refused whole, the instance not stored
    truncated = manager.post(url, body(good, close=False)[:-2], content_type=CONTENT_TYPE)
    assert truncated.status_code == 400 and "body" in truncated.json()
    no_boundary = manager.post(
        url, good, content_type='multipart/related; type="application/dicom"'
    )
    assert no_boundary.status_code == 400 and "body" in no_boundary.json()
    no_parts = manager.post(url, f"--{BOUNDARY}--\r\n".encode(), content_type=CONTENT_TYPE)
    assert no_parts.status_code == 400 and "body" in no_parts.json()
    endless_headers = f"--{BOUNDARY}\r\n".encode() + b"X-A: b\r\n" * 5000
    assert manager.post(url, endless_headers, content_type=CONTENT_TYPE).status_code == 400
    json_parts = 'multipart/related; type="application/dicom+json"; boundary=x'
    assert manager.post(url, body(good), content_type=json_parts).status_code == 415
    assert manager.post(url, good, content_type="application/dicom").status_code == 415

    settings.MAX_UPLOAD_FILES = 2
    too_many = manager.post(url, body(good, good, good), content_type=CONTENT_TYPE)
    assert too_many.status_code == 400 and "body" in too_many.json()
    settings.MAX_UPLOAD_FILES = 100
    settings.MAX_UPLOAD_BYTES = 2000  # the body is refused by its declared length, unread
    too_big = manager.post(url, body(good) + b"x" * (2 * 1024 * 1024), content_type=CONTENT_TYPE)
    assert too_big.status_code == 400 and "body" in too_big.json()

    assert Series.objects.count() == series_before
    assert stored_files(media_root) == files_before


def test_the_byte_cap_holds_without_a_declared_length(tmp_path: Path) -> None:
    """A chunked body (no Content-Length) is counted as it is read, and stopped at the cap."""
    from rest_framework.exceptions import ValidationError

    from projects.intake.stow import read_parts

    stream = io.BytesIO(body(b"a" * 10_000, b"b" * 10_000))
    with pytest.raises(ValidationError) as refused:
        read_parts(stream, BOUNDARY, tmp_path, limit=15_000, max_parts=10)
    assert "body" in refused.value.detail  # type: ignore[operator]
    parts = read_parts(
        io.BytesIO(body(b"a" * 10_000, b"b\r\n--not" * 10)),
        BOUNDARY,
        tmp_path,
        limit=50_000,
        max_parts=10,
    )
    assert [p.path.read_bytes() for p in parts] == [b"a" * 10_000, b"b\r\n--not" * 10]
    # a part may have no headers; transport padding may follow a boundary
    raw = f"preamble\r\n--{BOUNDARY}\r\n\r\nxyz\r\n--{BOUNDARY}  \r\nContent-Type: a/b\r\n\r\n"
    raw += f"\r\n--{BOUNDARY}--"
    parts = read_parts(io.BytesIO(raw.encode()), BOUNDARY, tmp_path, limit=1000, max_parts=10)
    assert [(p.content_type, p.path.read_bytes()) for p in parts] == [("", b"xyz"), ("a/b", b"")]


def test_a_deidentifying_project_answers_with_the_stored_uids(
    workspace: dict[str, Any], manager: Client
) -> None:
    project = workspace["project"]
    project.deidentify = True
    project.save(update_fields=["deidentify"])
    mr = pydicom.dcmread(sample("emri_small.dcm"))
    url = f"/dicomweb/studies/{mr.StudyInstanceUID}?project={project.slug}"
    response = manager.post(
        url, body(sample("emri_small.dcm").read_bytes()), content_type=CONTENT_TYPE
    )
    assert response.status_code == 200, response.content[:300]
    answer = pydicom.Dataset.from_json(response.json())
    (item,) = answer.ReferencedSOPSequence
    assert item.ReferencedSOPInstanceUID == mr.SOPInstanceUID  # the instance the client sent
    (instance,) = Instance.objects.filter(series__study__project=project, series__modality="MR")
    assert instance.sop_instance_uid != mr.SOPInstanceUID  # stored under a new UID...
    study = instance.series.study.study_instance_uid
    assert item.RetrieveURL.endswith(  # ...which is where it can be retrieved
        f"/dicomweb/studies/{study}/series/{instance.series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )
    assert answer.RetrieveURL == f"http://testserver/dicomweb/studies/{study}"
    assert manager.get(urlsplit(item.RetrieveURL).path).status_code == 200
