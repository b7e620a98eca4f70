"""The DICOMweb server: QIDO-RS search, WADO-RS metadata / instances / frames, scoping by project.

Pixels must arrive intact: generated series (a NIfTI phantom) round-trip through the metadata's
rescale, compressed files give pydicom's decoded array (explicit VR little endian) or their own
compressed bytes (the stored syntax), and a real CT series (LUNG1-001, when ../shared/data is
there) gives every stored value back.
"""

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian

from annotator.core import storage
from annotator.imaging.volumes import volume_array
from annotator.models import Instance, Series, Study
from projects.intake.image_import import ImportedVolume
from projects.intake.ingest import studies_import
from projects.models import Project

pytestmark = pytest.mark.django_db

LUNG1 = (
    Path(__file__).resolve().parents[2].parent / "shared/data/mirp/ct_images_seg_nsclc/LUNG1-001"
)
OCTET_LE = (
    f'multipart/related; type="application/octet-stream"; transfer-syntax={ExplicitVRLittleEndian}'
)
DICOM_TYPE = 'multipart/related; type="application/dicom"'
AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
EXPLICIT_LE = (
    'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
)


def store_series(project: Project, paths: list[Path], study_uid: str | None = None) -> Series:
    """Store DICOM files as one series' instances, as the ingest service will (rows + files)."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    first = headers[0]
    study, _ = Study.objects.get_or_create(
        project=project,
        study_instance_uid=study_uid or first.StudyInstanceUID,
        defaults={
            "patient_id": str(first.get("PatientID", "")),
            "patient_name": str(first.get("PatientName", "")),
        },
    )
    series_uid = str(first.SeriesInstanceUID)
    prefix = f"projects/{project.slug}/series/{series_uid}"
    series = Series.objects.create(
        study=study,
        series_instance_uid=series_uid,
        modality=str(first.get("Modality", "OT")),
        original_prefix=f"{prefix}/original/",
    )

    def position(ds: Any) -> float:
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            o = np.array(ds.ImageOrientationPatient, dtype=float)
            return float(np.dot(np.cross(o[:3], o[3:]), np.array(ds.ImagePositionPatient, float)))
        return float(ds.get("InstanceNumber", 0) or 0)

    offset = 0
    for path, ds in sorted(zip(paths, headers, strict=True), key=lambda p: position(p[1])):
        key = storage.save_file(f"{prefix}/instances/{ds.SOPInstanceUID}.dcm", path.read_bytes())
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        Instance.objects.create(
            series=series,
            sop_instance_uid=ds.SOPInstanceUID,
            sop_class_uid=ds.SOPClassUID,
            instance_number=ds.get("InstanceNumber"),
            transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
            number_of_frames=frames,
            frame_offset=offset,
            storage_key=key,
            size_bytes=path.stat().st_size,
        )
        offset += frames
    return series


def parts(response: Any) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related response."""
    return [(fields["Content-Type"], payload) for fields, payload in part_fields(response)]


def part_fields(response: Any) -> list[tuple[dict[str, str], bytes]]:
    """(headers, body) of each part of a multipart/related response."""
    content_type = response["Content-Type"]
    assert content_type.startswith("multipart/related"), content_type
    boundary = re.search(r"boundary=([^;]+)", content_type).group(1).strip('"')  # type: ignore[union-attr]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    chunks = body.split(b"--" + boundary.encode())
    assert chunks[0] == b"" and chunks[-1] == b"--\r\n", (chunks[0][:50], chunks[-1][:50])
    out = []
    for chunk in chunks[1:-1]:
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        assert payload.endswith(b"\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append((fields, payload[:-2]))
    return out


def value(dataset: dict[str, Any], tag: str) -> Any:
    return dataset[tag]["Value"][0]


@pytest.fixture
def dw(workspace: dict[str, Any]) -> dict[str, Any]:
    """The workspace's phantom, seen by a signed-in annotator through the session."""
    client = Client()
    client.force_login(workspace["annotator"])
    imported: ImportedVolume = workspace["imported"]
    series = imported.series
    return {
        **workspace,
        "client": client,
        "series": series,
        "study_uid": series.study.study_instance_uid,
        "series_uid": series.series_instance_uid,
        "base": f"/dicomweb/studies/{series.study.study_instance_uid}/series/"
        f"{series.series_instance_uid}",
    }


def test_qido_finds_the_imported_phantom_with_standard_matching(dw: dict[str, Any]) -> None:
    client, study_uid = dw["client"], dw["study_uid"]
    Study.objects.filter(study_instance_uid=study_uid).update(
        patient_name="Doe^Jane", patient_id="P-17", accession_number="ACC9"
    )
    response = client.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    (study,) = response.json()
    assert value(study, "0020000D") == study_uid
    assert study["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert study["00080061"]["Value"] == ["CT"]
    assert value(study, "00201208") == 24
    assert value(study, "00201206") == 1
    assert value(study, "00081190").endswith(f"/dicomweb/studies/{study_uid}")

    def count(**params: str) -> int:
        response = client.get("/dicomweb/studies", params)
        assert response.status_code == 200, response.content
        return len(response.json())

    assert count(PatientName="doe*") == 1
    assert count(PatientName="D?e^J*") == 1
    assert count(PatientName="Smith*") == 0
    assert count(PatientID="P-17") == 1
    assert count(**{"00100020": "P-18"}) == 0
    assert count(StudyInstanceUID=f"1.2.3,{study_uid}") == 1
    assert count(StudyInstanceUID="1.2.3") == 0
    study_date = Study.objects.get(study_instance_uid=study_uid).study_date
    assert study_date is not None
    today = study_date.strftime("%Y%m%d")
    assert count(StudyDate=today) == 1
    assert count(StudyDate=f"19900101-{today}") == 1
    assert count(StudyDate="-19991231") == 0
    assert count(StudyDate=f"{today}-") == 1
    assert count(AccessionNumber="ACC9") == 1
    assert count(ModalitiesInStudy="CT") == 1
    assert count(ModalitiesInStudy="MR") == 0
    assert count(limit="1", offset="1") == 0
    assert count(includefield="all") == 1
    assert client.get("/dicomweb/studies", {"NotAKeyword": "x"}).status_code == 400
    assert client.get("/dicomweb/studies", {"limit": "-1"}).status_code == 400
    assert client.get("/dicomweb/studies", HTTP_ACCEPT="application/xml").status_code == 406

    series = client.get(f"/dicomweb/studies/{study_uid}/series").json()
    assert [value(s, "0020000E") for s in series] == [dw["series_uid"]]
    assert value(series[0], "00080060") == "CT"
    assert value(series[0], "00201209") == 24
    assert len(client.get("/dicomweb/series", {"Modality": "CT"}).json()) == 1
    assert client.get("/dicomweb/series", {"SeriesInstanceUID": "1.2"}).json() == []

    instances = client.get(f"{dw['base']}/instances").json()
    assert [value(i, "00200013") for i in instances] == list(range(1, 25))
    sop = value(instances[3], "00080018")
    assert len(client.get("/dicomweb/instances", {"SOPInstanceUID": sop}).json()) == 1
    assert len(client.get(f"/dicomweb/studies/{study_uid}/instances", {"limit": "5"}).json()) == 5


def test_qido_wildcards_match_as_sql_patterns_in_linear_time(dw: dict[str, Any]) -> None:
    """``*`` / ``?`` are SQL patterns: a 12-term pattern on a 200-character value answers at
    once (a backtracking regex took seconds with 5 terms), and SQL's own metacharacters, GLOB's
    ``[`` and backslashes match themselves."""
    client, study_uid = dw["client"], dw["study_uid"]
    studies = Study.objects.filter(study_instance_uid=study_uid)
    long_value = "a" * 199 + "c"  # the field's maximum length, no "b" in it
    studies.update(description=long_value, patient_name="O'Brien^Ann")

    def count(**params: str) -> int:
        response = client.get("/dicomweb/studies", params)
        assert response.status_code == 200, response.content
        return len(response.json())

    assert count(StudyDescription="*c") == 1  # warm: the first request compiles URLs etc.
    hostile = "*a" * 11 + "*b"
    for description, expected in ((long_value, 0), ("ab" * 100, 1)):
        studies.update(description=description)
        started = time.perf_counter()
        found = count(StudyDescription=hostile)
        elapsed = time.perf_counter() - started
        assert found == expected
        assert elapsed < 0.05, f"{elapsed:.3f} s for {hostile!r}"

    studies.update(description="100%_sure [ab] C:\\scan")
    assert count(StudyDescription="100%*") == 1
    assert count(StudyDescription="1%*") == 0  # % is a character, not SQL's wildcard
    assert count(StudyDescription="100%?sure*") == 1
    assert count(StudyDescription="100_*") == 0  # _ too
    assert count(StudyDescription="*[ab]*") == 1  # [ is not a GLOB class
    assert count(StudyDescription="*[a]*") == 0
    assert count(StudyDescription="*C:\\s??n") == 1
    assert count(StudyDescription="*c:\\s??n") == 0  # case-sensitive, as before
    assert count(StudyDescription="100%_SURE*") == 0
    assert count(PatientName="o'brien*") == 1  # person names ignore case
    assert count(PatientName="O?BRIEN^a*") == 1
    assert count(PatientName="*_*") == 0
    for params in (
        {"PatientName": "a\x00*"},
        {"StudyDescription": "*" + "a" * 1100},
        {"StudyInstanceUID": ",".join(["1.2"] * 1001)},
        {"offset": "1" + "0" * 29},
    ):
        response = client.get("/dicomweb/studies", params)
        assert response.status_code == 400, response.content
        assert set(response.json()) == set(params), response.json()
    response = client.get("/dicomweb/series", {"SeriesNumber": "9" * 30})
    assert response.status_code == 400 and "SeriesNumber" in response.json()


def test_wado_frames_of_the_phantom_rescale_to_the_volume(dw: dict[str, Any]) -> None:
    client, base = dw["client"], dw["base"]
    response = client.get(f"{base}/metadata", HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    metadata = response.json()
    assert len(metadata) == 24
    expected = volume_array(dw["imported"].volume)
    got = np.zeros_like(expected)
    for z, instance in enumerate(metadata):
        assert value(instance, "00080016") == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        uri = instance["7FE00010"]["BulkDataURI"]
        assert uri.startswith("http://testserver/dicomweb/studies/") and uri.endswith("/frames/1")
        response = client.get(uri, HTTP_ACCEPT=OCTET_LE)
        assert response.status_code == 200
        ((part_type, data),) = parts(response)
        assert part_type == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
        rows, columns = value(instance, "00280010"), value(instance, "00280011")
        dtype = "<i2" if value(instance, "00280103") else "<u2"
        stored = np.frombuffer(data, dtype=dtype).reshape(rows, columns)
        slope, intercept = float(value(instance, "00281053")), float(value(instance, "00281052"))
        got[z] = np.rint(stored * slope + intercept)
    np.testing.assert_array_equal(got, expected)
    # The series' metadata is cached in storage as a derived file, and served from it.
    derived = default_storage.listdir(f"projects/alpha/series/{dw['series_uid']}/derived")[1]
    assert len(derived) == 1 and derived[0].startswith("dicomweb-metadata-")
    assert client.get(f"{base}/metadata").json() == metadata
    # Instance metadata, and the file as it was stored.
    sop = value(metadata[5], "00080018")
    one = client.get(f"{base}/instances/{sop}/metadata").json()
    assert one == [metadata[5]]
    ((part_type, data),) = parts(client.get(f"{base}/instances/{sop}"))
    assert part_type.startswith("application/dicom")
    with default_storage.open(Instance.objects.get(sop_instance_uid=sop).storage_key) as f:
        assert data == f.read()
    assert len(parts(client.get(base))) == 24
    # Frames out of range, malformed, or in a syntax that cannot be produced.
    assert client.get(f"{base}/instances/{sop}/frames/2").status_code == 404
    assert client.get(f"{base}/instances/{sop}/frames/0").status_code == 400
    jp2 = 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.90'
    assert client.get(f"{base}/instances/{sop}/frames/1", HTTP_ACCEPT=jp2).status_code == 406


def test_series_bulkdata_is_every_frame_in_one_response(dw: dict[str, Any]) -> None:
    """What the viewer loads a volume with: the series' frames, each with its frame resource and
    length, in the series' order, equal to what the frames resource gives one by one."""
    client, base = dw["client"], dw["base"]
    metadata = client.get(f"{base}/metadata").json()
    accept = OCTET_LE
    response = client.get(base, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"].startswith('multipart/related; type="application/octet-stream"')
    got = part_fields(response)
    assert len(got) == 24
    for instance, (fields, payload) in zip(metadata, got, strict=True):
        sop = value(instance, "00080018")
        assert fields["Content-Location"] == f"http://testserver{base}/instances/{sop}/frames/1"
        rows, columns = value(instance, "00280010"), value(instance, "00280011")
        size = rows * columns * value(instance, "00280100") // 8
        assert int(fields["Content-Length"]) == len(payload) == size
        assert (
            fields["Content-Type"]
            == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
        )
        ((_, one),) = parts(client.get(f"{base}/instances/{sop}/frames/1", HTTP_ACCEPT=OCTET_LE))
        assert payload == one
    # application/dicom first (or no Accept): the instances, as before.
    dicom_first = f"{DICOM_TYPE}, {accept}"
    assert parts(client.get(base, HTTP_ACCEPT=dicom_first))[0][0].startswith("application/dicom")
    # A single-part range alone cannot hold a series.
    single = "application/octet-stream; transfer-syntax=*"
    assert client.get(base, HTTP_ACCEPT=single).status_code == 406


COMPRESSED = [
    "emri_small_jpeg_2k_lossless.dcm",  # JPEG 2000, 10 frames
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "MR_small_RLE.dcm",  # RLE
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, RGB
]


@pytest.mark.parametrize("name", COMPRESSED)
def test_compressed_frames_decoded_or_as_stored(
    name: str, workspace: dict[str, Any], client_for: Callable[[Any], Any]
) -> None:
    path = Path(get_testdata_file(name))  # type: ignore[arg-type]
    reference = pydicom.dcmread(path)
    series = store_series(workspace["project"], [path])
    client = Client()
    client.force_login(workspace["reviewer"])
    sop = reference.SOPInstanceUID
    url = (
        f"/dicomweb/studies/{series.study.study_instance_uid}/series/"
        f"{series.series_instance_uid}/instances/{sop}"
    )
    n = int(reference.get("NumberOfFrames", 1) or 1)
    numbers = ",".join(str(i) for i in range(1, n + 1))
    decoded = reference.pixel_array if n > 1 else reference.pixel_array[None]
    # Explicit VR little endian: pydicom's decoded values.
    response = client.get(f"{url}/frames/{numbers}", HTTP_ACCEPT=OCTET_LE)
    assert response.status_code == 200
    got = parts(response)
    assert len(got) == n
    for i, (part_type, data) in enumerate(got):
        assert part_type.endswith(ExplicitVRLittleEndian)
        frame = decoded[i]
        assert data == np.ascontiguousarray(frame.astype(frame.dtype.newbyteorder("<"))).tobytes()
    # As stored: the compressed bytes themselves, with their media type.
    stored_syntax = reference.file_meta.TransferSyntaxUID
    originals = list(generate_frames(reference.PixelData, number_of_frames=n))
    for accept in (AS_STORED, f'multipart/related; type="*/*"; transfer-syntax={stored_syntax}'):
        got = parts(client.get(f"{url}/frames/{numbers}", HTTP_ACCEPT=accept))
        assert [data for _, data in got] == originals
        assert got[0][0].endswith(f"transfer-syntax={stored_syntax}")
        assert got[0][0].split(";")[0] in (
            "image/jp2",
            "image/jls",
            "image/x-dicom-rle",
            "image/jpeg",
        )
    # A single-part payload for one frame: its bytes are the whole body (the viewer asks so).
    one = client.get(f"{url}/frames/1", HTTP_ACCEPT="application/octet-stream; transfer-syntax=*")
    assert one.status_code == 200
    assert one["Content-Type"].split(";")[0] == got[0][0].split(";")[0]
    assert one["Content-Type"].endswith(f"transfer-syntax={stored_syntax}")
    assert one.content == originals[0]
    one = client.get(f"{url}/frames/1", HTTP_ACCEPT="application/octet-stream")
    assert (
        one["Content-Type"] == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    )
    first = decoded[0]
    assert (
        one.content == np.ascontiguousarray(first.astype(first.dtype.newbyteorder("<"))).tobytes()
    )
    if n > 1:
        # Several frames: not as one part; a multipart alternative is taken, else 406.
        single_only = "application/octet-stream; transfer-syntax=*"
        assert client.get(f"{url}/frames/1,2", HTTP_ACCEPT=single_only).status_code == 406
        both = f"{single_only}, {AS_STORED}; q=0.5"
        assert [d for _, d in parts(client.get(f"{url}/frames/1,2", HTTP_ACCEPT=both))] == (
            originals[:2]
        )
    # The series' bulk data: every frame, decoded or as stored.
    series_url = url.rsplit("/instances/", 1)[0]
    bulk = part_fields(client.get(series_url, HTTP_ACCEPT=AS_STORED))
    assert [payload for _, payload in bulk] == originals
    assert [f["Content-Location"].rsplit("/", 1)[1] for f, _ in bulk] == [
        str(i) for i in range(1, n + 1)
    ]
    bulk = part_fields(client.get(series_url, HTTP_ACCEPT=OCTET_LE))
    assert len(bulk) == n
    for i, (_, payload) in enumerate(bulk):
        frame = decoded[i]
        assert (
            payload == np.ascontiguousarray(frame.astype(frame.dtype.newbyteorder("<"))).tobytes()
        )
    # Another compressed syntax: 406.
    other = (
        "1.2.840.10008.1.2.4.50"
        if stored_syntax != "1.2.840.10008.1.2.4.50"
        else "1.2.840.10008.1.2.4.90"
    )
    refused = client.get(
        f"{url}/frames/1",
        HTTP_ACCEPT=f'multipart/related; type="image/jpeg"; transfer-syntax={other}',
    )
    assert refused.status_code == 406
    # The instance as received (transfer-syntax=*), and decompressed on request or by default
    # (PS3.18: explicit VR little endian when the Accept header names no syntax).
    ((_, data),) = parts(client.get(url, HTTP_ACCEPT=f"{DICOM_TYPE}; transfer-syntax=*"))
    assert data == path.read_bytes()
    from io import BytesIO

    accepts: list[str | None] = [
        f"{DICOM_TYPE}; transfer-syntax={ExplicitVRLittleEndian}",
        DICOM_TYPE,
        None,
    ]
    for wanted in accepts:
        headers = {"Accept": wanted} if wanted else {}
        ((part_type, data),) = parts(client.get(url, headers=headers))
        assert part_type.endswith(ExplicitVRLittleEndian), wanted
        again = pydicom.dcmread(BytesIO(data))
        assert again.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        np.testing.assert_array_equal(again.pixel_array, reference.pixel_array)
    metadata = client.get(f"{url}/metadata").json()[0]
    assert value(metadata, "00083002") == stored_syntax
    assert metadata["7FE00010"]["BulkDataURI"].endswith(f"/frames/{numbers}")


def test_other_projects_do_not_exist_and_anonymous_is_refused(
    dw: dict[str, Any], make_project: Callable[..., Project], make_user: Callable[..., Any]
) -> None:
    outsider = Client()
    outsider.force_login(dw["outsider"])
    make_project("beta", annotator=dw["outsider"])  # a project of theirs, without this study
    sop = dw["series"].instances.first().sop_instance_uid
    study_uid = dw["study_uid"]
    assert outsider.get("/dicomweb/studies").json() == []
    assert outsider.get("/dicomweb/series").json() == []
    assert outsider.get("/dicomweb/instances").json() == []
    assert outsider.get("/dicomweb/studies", {"StudyInstanceUID": study_uid}).json() == []
    urls = [
        f"/dicomweb/studies/{study_uid}",
        f"/dicomweb/studies/{study_uid}/metadata",
        f"/dicomweb/studies/{study_uid}/series",
        f"/dicomweb/studies/{study_uid}/instances",
        dw["base"],
        f"{dw['base']}/metadata",
        f"{dw['base']}/instances",
        f"{dw['base']}/instances/{sop}",
        f"{dw['base']}/instances/{sop}/metadata",
        f"{dw['base']}/instances/{sop}/frames/1",
    ]
    for url in urls:
        assert outsider.get(url).status_code == 404, url
        assert Client().get(url).status_code in (401, 403), url
        assert dw["client"].get(url).status_code == 200, url
    assert Client().get("/dicomweb/studies").status_code in (401, 403)


@pytest.mark.skipif(not LUNG1.exists(), reason="../shared/data/mirp is absent")
def test_lung1_every_frame_equals_the_stored_values(workspace: dict[str, Any]) -> None:
    paths = []
    for path in sorted((LUNG1).rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality == "CT":
            paths.append(path)
    assert len(paths) == 134
    report = studies_import(project=workspace["project"], paths=[LUNG1])  # CT + its RTSTRUCT
    assert report.imported_series == 1
    ct_series_uid = pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
    series = Series.objects.get(series_instance_uid=ct_series_uid)
    client = Client()
    client.force_login(workspace["annotator"])
    base = (
        f"/dicomweb/studies/{series.study.study_instance_uid}/series/{series.series_instance_uid}"
    )
    started = time.perf_counter()
    metadata = client.get(f"{base}/metadata").json()
    first_metadata = time.perf_counter() - started
    started = time.perf_counter()
    client.get(f"{base}/metadata").json()
    cached_metadata = time.perf_counter() - started
    assert len(metadata) == 134
    started = time.perf_counter()
    frames = {}
    for instance in metadata:
        response = client.get(instance["7FE00010"]["BulkDataURI"], HTTP_ACCEPT=EXPLICIT_LE)
        ((_, data),) = parts(response)
        frames[value(instance, "00080018")] = data
    all_frames = time.perf_counter() - started
    print(
        f"LUNG1-001: metadata {first_metadata:.2f} s (cached {cached_metadata:.3f} s), "
        f"134 frames {all_frames:.2f} s"
    )
    for path in paths:
        ds = pydicom.dcmread(path)
        stored = np.frombuffer(frames[ds.SOPInstanceUID], dtype=ds.pixel_array.dtype)
        np.testing.assert_array_equal(stored.reshape(ds.pixel_array.shape), ds.pixel_array)


def test_dicomweb_client_reads_everything_through_a_live_server(
    live_server: Any, workspace: dict[str, Any], make_project: Callable[..., Project]
) -> None:
    """The standard client (what the viewer's loader mirrors) parses every answer."""
    import requests
    from dicomweb_client.api import DICOMwebClient
    from knox.models import AuthToken

    path = Path(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"))  # type: ignore[arg-type]
    compressed = store_series(workspace["project"], [path])
    foreign = store_series(make_project("gamma"), [Path(get_testdata_file("MR_small_RLE.dcm"))])  # type: ignore[arg-type]
    session = requests.Session()
    _, token = AuthToken.objects.create(user=workspace["annotator"])
    session.headers["Authorization"] = f"Token {token}"
    client = DICOMwebClient(f"{live_server.url}/dicomweb", session=session)

    studies = client.search_for_studies()
    uids = {value(s, "0020000D") for s in studies}
    assert uids == {
        workspace["imported"].series.study.study_instance_uid,
        compressed.study.study_instance_uid,
    }
    assert foreign.study.study_instance_uid not in uids
    phantom = workspace["imported"].series
    study_uid, series_uid = phantom.study.study_instance_uid, phantom.series_instance_uid
    assert len(client.search_for_series(study_uid)) == 1
    instances = client.search_for_instances(study_uid, series_uid)
    assert len(instances) == 24
    metadata = client.retrieve_series_metadata(study_uid, series_uid)
    assert len(metadata) == 24
    sop = value(metadata[0], "00080018")
    (frame,) = client.retrieve_instance_frames(study_uid, series_uid, sop, [1])
    assert len(frame) == 96 * 96 * 2
    (same,) = client.retrieve_instance_frames(
        study_uid, series_uid, sop, [1], media_types=(("application/octet-stream", "*"),)
    )
    assert same == frame
    dataset = client.retrieve_instance(study_uid, series_uid, sop)
    assert dataset.SOPInstanceUID == sop
    assert len(client.retrieve_series(study_uid, series_uid)) == 24

    reference = pydicom.dcmread(path)
    c_study, c_series = compressed.study.study_instance_uid, compressed.series_instance_uid
    frames = client.retrieve_instance_frames(
        c_study,
        c_series,
        reference.SOPInstanceUID,
        [1, 2, 10],
        media_types=(("image/jp2", "1.2.840.10008.1.2.4.90"),),
    )
    originals = list(generate_frames(reference.PixelData, number_of_frames=10))
    assert frames == [originals[0], originals[1], originals[9]]
    raw = client.retrieve_instance_frames(
        c_study,
        c_series,
        reference.SOPInstanceUID,
        [3],
        media_types=(("application/octet-stream", ExplicitVRLittleEndian),),
    )
    assert raw == [reference.pixel_array[2].astype("<u2").tobytes()]
    with pytest.raises(requests.HTTPError) as refused:
        client.retrieve_series_metadata(
            foreign.study.study_instance_uid, foreign.series_instance_uid
        )
    assert refused.value.response.status_code == 404
