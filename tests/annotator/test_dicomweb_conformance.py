"""DICOMweb as PS3.18 and real clients expect it: values kept as stored, one copy of a study
shared by two projects, Bearer / Basic / 401 challenges, absolute links under PUBLIC_BASE_URL,
explicit VR little endian by default, the required QIDO attributes and ``includefield``.
"""

import base64
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from knox.models import AuthToken
from pydicom import config
from pydicom.data import get_testdata_file
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from annotator.models import Series
from projects.models import Project
from tests.annotator.test_dicomweb import DICOM_TYPE, OCTET_LE, part_fields, parts, store_series

pytestmark = pytest.mark.django_db

JSON = "application/dicom+json"
LONG_DS = "0.683593750000001"  # 17 characters: longer than DS allows (16)
LONG_SH = "STUDY-ID-FAR-TOO-LONG-FOR-SH"  # 28 characters: SH allows 16


def make_series(
    folder: Path,
    n: int,
    *,
    source: str = "CT_small.dcm",
    syntax: str | None = None,
    edit: Callable[[pydicom.Dataset], None] | None = None,
) -> list[Path]:
    """``n`` slices of one new study and series, from a pydicom test file."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file(source))  # type: ignore[arg-type]
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        if edit is not None:
            edit(ds)
        path = folder / f"{i}.dcm"
        with config.disable_value_validation():
            if syntax == ImplicitVRLittleEndian:
                ds.file_meta.TransferSyntaxUID = UID(syntax)
                ds.save_as(path, implicit_vr=True, little_endian=True)
            else:
                ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def value(dataset: dict[str, Any], tag: str) -> Any:
    return dataset[tag]["Value"][0]


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def urls_of(series: Series) -> tuple[str, str]:
    study = f"/dicomweb/studies/{series.study.study_instance_uid}"
    return study, f"{study}/series/{series.series_instance_uid}"


# ---- 1. values that break a VR rule are kept --------------------------------------------------


def test_metadata_keeps_values_that_break_vr_rules(
    workspace: dict[str, Any], tmp_path: Path
) -> None:
    """DS values of 17 characters, an over-long SH, a DS that is no number: all served as
    stored (they were dropped); an empty sequence has no "Value" (F.2.5)."""

    def invalid(ds: pydicom.Dataset) -> None:
        ds.add_new(0x00280030, "DS", [LONG_DS, LONG_DS])  # PixelSpacing
        z = float(ds.InstanceNumber)
        ds.add_new(0x00200032, "DS", ["-158.135803000001", "-179.035797000001", f"{z:.15f}"])
        ds.add_new(0x00200010, "SH", LONG_SH)  # StudyID
        ds.add_new(0x00180050, "DS", "1234567890123456")  # SliceThickness: garbled below
        ds.add_new(0x00081140, "SQ", [])  # ReferencedImageSequence, empty

    paths = make_series(tmp_path / "mr", 2, source="MR_small.dcm", edit=invalid)
    for path in paths:  # a DS that is not a number at all, as some scanners write
        path.write_bytes(path.read_bytes().replace(b"1234567890123456", b"unknown thickns "))
    series = store_series(workspace["project"], paths)
    client = signed_in(workspace["annotator"])
    study_url, series_url = urls_of(series)

    metadata = client.get(f"{series_url}/metadata", HTTP_ACCEPT=JSON).json()
    assert len(metadata) == 2
    for z, instance in enumerate(metadata):
        assert instance["00280030"] == {"vr": "DS", "Value": [float(LONG_DS), float(LONG_DS)]}
        position = instance["00200032"]["Value"]
        assert position == pytest.approx([-158.135803, -179.035797, float(z + 1)])
        assert instance["00200010"] == {"vr": "SH", "Value": [LONG_SH]}
        assert instance["00180050"] == {"vr": "DS", "Value": ["unknown thickns"]}
        assert instance["00081140"] == {"vr": "SQ"}
        assert "BulkDataURI" in instance["7FE00010"]
    sop = value(metadata[0], "00080018")
    one = client.get(f"{series_url}/instances/{sop}/metadata", HTTP_ACCEPT=JSON).json()
    assert one == [metadata[0]]
    # The study's search result carries the over-long StudyID too.
    query = {"StudyInstanceUID": series.study.study_instance_uid}
    (found,) = client.get("/dicomweb/studies", query).json()
    assert found["00200010"] == {"vr": "SH", "Value": [LONG_SH]}
    assert study_url.endswith(series.study.study_instance_uid)


# ---- 2. a study in two projects is one study ---------------------------------------------------


def test_a_study_in_two_of_the_users_projects_is_served_once(
    workspace: dict[str, Any], make_project: Callable[..., Project], tmp_path: Path
) -> None:
    user = workspace["annotator"]
    paths = make_series(tmp_path / "ct", 3)
    first = store_series(workspace["project"], paths)
    second = store_series(make_project("beta", annotator=user), paths)
    assert first.pk != second.pk and first.study_id != second.study_id
    client = signed_in(user)
    study_uid, series_uid = first.study.study_instance_uid, first.series_instance_uid
    study_url, series_url = urls_of(first)

    studies = client.get("/dicomweb/studies", HTTP_ACCEPT=JSON).json()
    assert [value(s, "0020000D") for s in studies].count(study_uid) == 1
    (study,) = [s for s in studies if value(s, "0020000D") == study_uid]
    assert value(study, "00201206") == 1 and value(study, "00201208") == 3
    assert len(client.get("/dicomweb/series", {"StudyInstanceUID": study_uid}).json()) == 1
    assert len(client.get(f"{study_url}/series").json()) == 1
    assert len(client.get(f"{series_url}/instances").json()) == 3
    assert len(client.get(f"{study_url}/instances").json()) == 3
    assert len(client.get("/dicomweb/instances", {"SeriesInstanceUID": series_uid}).json()) == 3
    assert len(client.get(f"{series_url}/metadata").json()) == 3
    assert len(client.get(f"{study_url}/metadata").json()) == 3
    for url in (series_url, study_url):
        assert len(parts(client.get(url))) == 3, url
        assert len(part_fields(client.get(url, HTTP_ACCEPT=OCTET_LE))) == 3, url


# ---- 3. Bearer, Basic, and a challenge for no credentials ---------------------------------------


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_bearer_and_basic_sign_in_and_no_credentials_get_a_challenge(
    workspace: dict[str, Any], settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    user = workspace["annotator"]
    _, token = AuthToken.objects.create(user=user)
    study_uid = workspace["imported"].series.study.study_instance_uid
    url = f"/dicomweb/studies/{study_uid}/metadata"

    anonymous = Client().get(url)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="dicomweb"'
    assert anonymous.json() == {"detail": "Authentication credentials were not provided."}
    for header in (f"Bearer {token}", f"Token {token}", f"bearer {token}"):
        assert Client().get(url, HTTP_AUTHORIZATION=header).status_code == 200, header
    # The same Bearer token opens the API too (one token scheme, two keywords).
    assert Client().get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    refused = Client().get(url, HTTP_AUTHORIZATION=f"Bearer {token[:-2]}xx")
    assert refused.status_code == 401 and refused.json() == {"detail": "Invalid token."}

    assert Client().get(url, HTTP_AUTHORIZATION=basic("annotator", "pw-annotator")).status_code == (
        200
    )
    wrong = Client().get(url, HTTP_AUTHORIZATION=basic("annotator", "nope"))
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"] == 'Basic realm="dicomweb"'
    # The login lockout counts Basic failures: the third locks the username out, and then even
    # the right password is refused (429) until the cool-off has passed.
    statuses = [
        Client().get(url, HTTP_AUTHORIZATION=basic("annotator", f"nope-{i}")).status_code
        for i in range(3)
    ]
    assert statuses == [401, 429, 429]
    locked = Client().get(url, HTTP_AUTHORIZATION=basic("annotator", "pw-annotator"))
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == int(settings.AXES_COOLOFF_TIME.total_seconds())
    # The token is not a password: it still works for the locked-out user.
    assert Client().get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    # Another username is not locked; once inactive, its right password opens nothing.
    reviewer = basic("reviewer", "pw-reviewer")
    assert Client().get(url, HTTP_AUTHORIZATION=reviewer).status_code == 200
    type(user).objects.filter(username="reviewer").update(is_active=False)
    assert Client().get(url, HTTP_AUTHORIZATION=reviewer).status_code == 401


def test_the_session_keeps_its_csrf_check(workspace: dict[str, Any]) -> None:
    """A browser's session cookie is no ticket for a cross-site write: DRF's CSRF check holds
    for DICOMweb as for the API (a token request has no cookie to forge)."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(workspace["annotator"])
    response = browser.post("/dicomweb/studies", b"", content_type="application/dicom")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert browser.get("/dicomweb/studies").status_code == 200


# ---- 4. absolute links under PUBLIC_BASE_URL ----------------------------------------------------


def test_absolute_links_use_the_public_base_url_when_set(
    workspace: dict[str, Any], settings: Any
) -> None:
    client = signed_in(workspace["annotator"])
    series = workspace["imported"].series
    study_url, series_url = urls_of(series)
    for base in ("http://testserver", "https://annotator.example.org:8443"):
        settings.PUBLIC_BASE_URL = "" if base == "http://testserver" else base + "/"
        metadata = client.get(f"{series_url}/metadata", HTTP_ACCEPT=JSON).json()
        assert metadata[0]["7FE00010"]["BulkDataURI"].startswith(f"{base}{series_url}/instances/")
        (study,) = client.get("/dicomweb/studies", HTTP_ACCEPT=JSON).json()
        assert value(study, "00081190") == f"{base}{study_url}"
        (found,) = client.get(f"{study_url}/series", HTTP_ACCEPT=JSON).json()
        assert value(found, "00081190") == f"{base}{series_url}"
        instance = client.get(f"{series_url}/instances", HTTP_ACCEPT=JSON).json()[0]
        assert value(instance, "00081190").startswith(f"{base}{series_url}/instances/")
        fields, _ = part_fields(client.get(series_url, HTTP_ACCEPT=OCTET_LE))[0]
        assert fields["Content-Location"].startswith(f"{base}{series_url}/instances/")


# ---- 5. the standard's defaults -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "syntax"),
    [
        ("CT_small.dcm", ImplicitVRLittleEndian),
        ("MR_small_RLE.dcm", None),
        ("emri_small_jpeg_2k_lossless.dcm", None),
    ],
)
def test_instances_are_explicit_vr_little_endian_unless_asked_as_stored(
    source: str, syntax: str | None, workspace: dict[str, Any], tmp_path: Path
) -> None:
    if syntax is None:
        paths = [Path(get_testdata_file(source))]  # type: ignore[arg-type]
    else:
        paths = make_series(tmp_path / "implicit", 2, source=source, syntax=syntax)
    series = store_series(workspace["project"], paths)
    stored = pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID
    assert stored != ExplicitVRLittleEndian
    client = signed_in(workspace["annotator"])
    study_url, series_url = urls_of(series)
    references = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in paths}
    for url in (study_url, series_url):
        accepts: list[str | None] = [None, DICOM_TYPE, "*/*", 'multipart/related; type="*/*"']
        for accept in accepts:
            headers = {"Accept": accept} if accept else {}
            got = parts(client.get(url, headers=headers))
            assert len(got) == len(paths), (url, accept)
            for part_type, data in got:
                assert part_type == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
                ds = pydicom.dcmread(BytesIO(data))
                assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
                reference = references[ds.SOPInstanceUID]
                np.testing.assert_array_equal(ds.pixel_array, reference.pixel_array)
        as_stored = parts(client.get(url, HTTP_ACCEPT=f"{DICOM_TYPE}; transfer-syntax=*"))
        assert sorted(data for _, data in as_stored) == sorted(p.read_bytes() for p in paths)
        assert {t for t, _ in as_stored} == {f"application/dicom; transfer-syntax={stored}"}


def test_qido_answers_the_required_attributes_and_includefield(
    workspace: dict[str, Any], tmp_path: Path
) -> None:
    def body_part(ds: pydicom.Dataset) -> None:
        ds.BodyPartExamined = "CHEST"
        ds.ReferencedImageSequence = []

    series = store_series(workspace["project"], make_series(tmp_path / "ct", 2, edit=body_part))
    client = signed_in(workspace["annotator"])
    study_uid = series.study.study_instance_uid
    study_url, series_url = urls_of(series)
    by_uid: dict[str, str] = {"StudyInstanceUID": study_uid}

    (study,) = client.get("/dicomweb/studies", by_uid).json()
    assert value(study, "00080030") == "072730"  # StudyTime
    assert value(study, "00100040") == "O"  # PatientSex
    assert value(study, "00200010") == "1CT1"  # StudyID
    assert study["00100030"] == {"vr": "DA"}  # PatientBirthDate: empty in the file, no "Value"
    assert study["00080090"] == {"vr": "PN"}  # ReferringPhysicianName
    assert "00081030" in study and "00101010" not in study  # PatientAge: only when asked
    for include in ("PatientAge", "00101010", "all"):
        (study,) = client.get("/dicomweb/studies", {**by_uid, "includefield": include}).json()
        assert study["00101010"]["vr"] == "AS", include
    for tag, entry in study.items():
        assert entry.get("Value", None) != [], tag

    (found,) = client.get(f"{study_url}/series").json()
    assert "00180015" not in found  # BodyPartExamined
    (found,) = client.get(f"{study_url}/series", {"includefield": "BodyPartExamined"}).json()
    assert value(found, "00180015") == "CHEST"
    (found,) = client.get(f"{study_url}/series", {"includefield": "all"}).json()
    assert value(found, "00180015") == "CHEST" and value(found, "00080021") == "19970430"
    (found,) = client.get("/dicomweb/series", by_uid).json()  # with the study's attributes
    assert value(found, "00080030") == "072730" and value(found, "00100040") == "O"

    instances = client.get(f"{series_url}/instances").json()
    assert len(instances) == 2
    for instance in instances:
        assert value(instance, "00280010") == 128  # Rows
        assert value(instance, "00280011") == 128  # Columns
        assert value(instance, "00280100") == 16  # BitsAllocated
        assert value(instance, "00280008") == 1  # NumberOfFrames
        assert value(instance, "00080056") == "ONLINE"  # InstanceAvailability
        assert "00280030" not in instance  # PixelSpacing: only when asked
    (one,) = client.get(
        f"{series_url}/instances", {"includefield": "00280030", "limit": "1"}
    ).json()
    assert one["00280030"]["Value"] == pytest.approx([0.661468, 0.661468])
    (one,) = client.get(f"{series_url}/instances", {"includefield": "all", "limit": "1"}).json()
    assert value(one, "00180015") == "CHEST" and "7FE00010" not in one
    assert one["00081140"] == {"vr": "SQ"}  # an empty sequence: no "Value" (PS3.18 F.2.5)
    assert value(one, "00081190").startswith("http://testserver/dicomweb/studies/")
    unknown = client.get(f"{series_url}/instances", {"includefield": "NoSuchKeyword"})
    assert unknown.status_code == 400
    # The first instance's study attributes are cached: the next search opens no file.
    first = series.instances.order_by("frame_offset", "pk").first()
    assert first is not None
    default_storage.delete(first.storage_key)
    (study,) = client.get("/dicomweb/studies", by_uid).json()
    assert value(study, "00080030") == "072730" and value(study, "00200010") == "1CT1"
    # An attribute outside the cached modules is read from the file: gone now, so absent.
    (study,) = client.get("/dicomweb/studies", {**by_uid, "includefield": "PixelSpacing"}).json()
    assert "00280030" not in study and value(study, "00080030") == "072730"


# ---- 6. real clients against the live server ----------------------------------------------------


def test_dicomweb_client_follows_the_advertised_links_behind_a_host_without_port(
    live_server: Any, workspace: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    """dicomweb-client as a script uses it, with a Host header that names no port (as a proxy
    in front may pass it): every link it is given works once PUBLIC_BASE_URL is set."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    series = store_series(workspace["project"], make_series(tmp_path / "ct", 3))
    study_uid, series_uid = series.study.study_instance_uid, series.series_instance_uid
    _, token = AuthToken.objects.create(user=workspace["annotator"])
    session = requests.Session()
    session.headers["Host"] = "localhost"  # no port
    session.headers["Authorization"] = f"Bearer {token}"
    client = DICOMwebClient(f"{live_server.url}/dicomweb", session=session)

    # Without the setting the links follow the Host header: port 80, where nothing listens.
    settings.PUBLIC_BASE_URL = ""
    metadata = client.retrieve_series_metadata(study_uid, series_uid)
    assert metadata[0]["7FE00010"]["BulkDataURI"].startswith("http://localhost/dicomweb/")

    settings.PUBLIC_BASE_URL = live_server.url
    studies = client.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    (study,) = studies
    assert value(study, "00080030") == "072730" and value(study, "00100040") == "O"
    assert value(study, "00081190") == f"{live_server.url}/dicomweb/studies/{study_uid}"
    (found,) = client.search_for_series(study_uid)
    assert value(found, "00201209") == 3  # NumberOfSeriesRelatedInstances
    instances = client.search_for_instances(study_uid, series_uid, fields=["PixelSpacing"])
    assert [value(i, "00280010") for i in instances] == [128, 128, 128]
    assert instances[0]["00280030"]["Value"] == pytest.approx([0.661468, 0.661468])
    metadata = client.retrieve_series_metadata(study_uid, series_uid)
    assert len(metadata) == 3
    for instance in metadata:
        uri = instance["7FE00010"]["BulkDataURI"]
        assert uri.startswith(f"{live_server.url}/dicomweb/studies/{study_uid}/")
        (bulk,) = client.retrieve_bulkdata(uri)
        sop = value(instance, "00080018")
        (frame,) = client.retrieve_instance_frames(study_uid, series_uid, sop, [1])
        assert bulk == frame and len(frame) == 128 * 128 * 2
    # The RetrieveURL of an instance gives the instance itself.
    retrieve_url = value(instances[0], "00081190")
    assert retrieve_url.startswith(live_server.url)
    response = session.get(retrieve_url, headers={"Accept": DICOM_TYPE}, timeout=30)
    assert response.status_code == 200 and b"DICM" in response.content[:1000]


def test_slicer_dicomweb_browser_downloads_every_series_with_a_bearer_token(
    live_server: Any,
    workspace: dict[str, Any],
    make_project: Callable[..., Project],
    settings: Any,
    tmp_path: Path,
) -> None:
    """3D Slicer's DICOMweb browser: a client with ``Authorization: Bearer``, studies page by
    page (offset) until an empty page, each study's series, each series' instances, then every
    instance retrieved and written to its local database folder, then read back."""
    from dicomweb_client.api import DICOMwebClient
    from requests import HTTPError

    settings.PUBLIC_BASE_URL = live_server.url
    user = workspace["annotator"]
    implicit = make_series(tmp_path / "implicit", 3, syntax=ImplicitVRLittleEndian)
    store_series(workspace["project"], implicit)
    store_series(make_project("beta", annotator=user), implicit)  # the same study, twice
    rle = Path(get_testdata_file("MR_small_RLE.dcm"))  # type: ignore[arg-type]
    store_series(workspace["project"], [rle])
    phantom = workspace["imported"].series
    expected = {
        (phantom.study.study_instance_uid, phantom.series_instance_uid): phantom.instances.count()
    }
    originals: dict[str, pydicom.Dataset] = {}
    for path in [*implicit, rle]:
        ds = pydicom.dcmread(path)
        originals[ds.SOPInstanceUID] = ds
        key = (ds.StudyInstanceUID, ds.SeriesInstanceUID)
        expected[key] = expected.get(key, 0) + 1

    anonymous = DICOMwebClient(url=f"{live_server.url}/dicomweb")
    with pytest.raises(HTTPError) as refused:
        anonymous.search_for_studies()
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Bearer realm="dicomweb"'

    _, token = AuthToken.objects.create(user=user)
    client = DICOMwebClient(
        url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
    )
    studies: list[dict[str, Any]] = []
    while True:
        subset = client.search_for_studies(offset=len(studies))
        if not subset or subset[0] in studies:
            break
        studies.extend(subset)
    assert sorted(value(s, "0020000D") for s in studies) == sorted({k[0] for k in expected})
    downloaded: dict[tuple[str, str], int] = {}
    for study in studies:
        study_uid = value(study, "0020000D")
        for series in client.search_for_series(study_uid):
            series_uid = value(series, "0020000E")
            folder = tmp_path / "slicer" / series_uid
            folder.mkdir(parents=True)
            for instance in client.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid
            ):
                sop = value(instance, "00080018")
                retrieved = client.retrieve_instance(
                    study_instance_uid=study_uid,
                    series_instance_uid=series_uid,
                    sop_instance_uid=sop,
                )
                pydicom.dcmwrite(folder / f"{sop}.dcm", retrieved, enforce_file_format=True)
            files = sorted(folder.iterdir())
            downloaded[(study_uid, series_uid)] = len(files)
            for path in files:
                ds = pydicom.dcmread(path)
                if ds.SOPInstanceUID in originals:
                    # dicomweb-client asks for transfer-syntax=*: the files as they were stored
                    original = originals[ds.SOPInstanceUID]
                    syntax = original.file_meta.TransferSyntaxUID
                    assert ds.file_meta.TransferSyntaxUID == syntax
                    np.testing.assert_array_equal(ds.pixel_array, original.pixel_array)
                else:
                    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            series_datasets = client.retrieve_series(study_uid, series_uid)
            assert len(series_datasets) == len(files)
    assert downloaded == expected
