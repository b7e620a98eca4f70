"""DICOM import through the service, the API and the management command."""

import io
import json
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from pydicom.data import get_testdata_file
from rest_framework.test import APIClient

from annotator.imaging.dicom.archive import ArchiveRefused, extract_zip
from annotator.imaging.volumes import volume_array
from annotator.models import Instance, Series, Study, Volume
from inference.evaluation import DEFAULT_DATA
from projects.intake import views as ingest_views
from projects.intake.ingest import ALREADY_IMPORTED, IMPORTED, studies_import
from projects.models import Project, Task
from tests.annotator.test_dicom_reading import FLIPPED, Slice, write_ct_series
from tests.support.disk import DiskWatch

pytestmark = pytest.mark.django_db

LUNG1 = DEFAULT_DATA / "mirp" / "ct_images_seg_nsclc" / "LUNG1-001" / "image"


@pytest.fixture
def project(make_project: Callable[..., Project], team: dict[str, Any]) -> Project:
    return make_project("imaging", manager=team["manager"], annotator=team["annotator"])


def check_imported(series: Series, slices: list[Slice]) -> None:
    """Rows, stored originals and voxels of a series written by write_ct_series."""
    assert series.modality == "CT" and series.series_number == 3
    assert series.description == "Axial 2.5"
    study = series.study
    assert (study.patient_id, study.patient_name, str(study.study_date)) == (
        "P-001",
        "Test^Patient",
        "2024-01-02",
    )
    instances = list(series.instances.all())  # ordered by frame_offset
    assert [i.sop_instance_uid for i in instances] == [s.sop_instance_uid for s in slices]
    assert [i.frame_offset for i in instances] == list(range(len(slices)))
    for instance, s in zip(instances, slices, strict=True):
        assert instance.storage_key == (
            f"projects/imaging/series/{series.series_instance_uid}/original/"
            f"{s.sop_instance_uid}.dcm"
        )
        with default_storage.open(instance.storage_key) as f:
            assert f.read() == s.path.read_bytes()
        assert instance.size_bytes == s.path.stat().st_size
    volume = Volume.objects.get(series=series)
    assert volume.shape_zyx == (len(slices), 16, 16)
    np.testing.assert_allclose(volume.spacing, [0.75, 0.5, 2.5])
    np.testing.assert_allclose(volume.origin, slices[0].position)
    expected = np.stack(
        [pydicom.dcmread(s.path).pixel_array.astype(np.int32) - 1024 for s in slices]
    )
    np.testing.assert_array_equal(volume_array(volume), expected)
    assert Task.objects.get(series=series).state == "unassigned"


def test_a_folder_through_the_service(project: Project, tmp_path: Path) -> None:
    slices = write_ct_series(tmp_path / "study" / "ct", count=5, orientation=FLIPPED)
    (tmp_path / "study" / "readme.txt").write_text("hello")
    report = studies_import(project=project, paths=[tmp_path / "study"])
    assert report.imported_series == 1
    statuses = {Path(f.source).name: f.status for f in report.files}
    assert statuses.pop("readme.txt") == "rejected"
    assert set(statuses.values()) == {IMPORTED}
    json.dumps(report.to_dict())  # the report is JSON-serialisable
    (summary,) = report.series
    assert summary.size == [16, 16, 5] and summary.task_id is not None
    assert summary.series_id is not None
    check_imported(Series.objects.get(pk=summary.series_id), slices)

    again = studies_import(project=project, paths=[tmp_path / "study"])
    assert [s.status for s in again.series] == [ALREADY_IMPORTED]
    assert {f.status for f in again.files if f.source.endswith(".dcm")} == {ALREADY_IMPORTED}
    assert Series.objects.count() == 1 and Instance.objects.count() == 5


def test_one_bad_series_does_not_stop_the_batch(project: Project, tmp_path: Path) -> None:
    good = write_ct_series(tmp_path / "good", count=3)
    write_ct_series(tmp_path / "gappy", count=5, skip=(2,), seed=5)
    report = studies_import(project=project, paths=[tmp_path / "gappy", tmp_path / "good"])
    assert sorted(s.status for s in report.series) == [IMPORTED, "rejected"]
    assert Series.objects.count() == 1 and Study.objects.count() == 1
    check_imported(Series.objects.get(), good)
    # The rejected series left no files behind.
    folders = default_storage.listdir("projects/imaging/series")[0]
    assert folders == [Series.objects.get().series_instance_uid]


def zipped(folder: Path, pattern: str = "*.dcm") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(p for p in folder.rglob(pattern) if p.is_file()):
            z.write(path, f"export/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def upload(client: APIClient, *files: tuple[str, bytes]) -> Any:
    payload = []
    for name, content in files:
        f = io.BytesIO(content)
        f.name = name
        payload.append(f)
    return client.post("/api/projects/imaging/imports/", {"files": payload}, format="multipart")


def test_a_zip_and_files_through_the_api(
    project: Project, team: dict[str, Any], client_for: Callable[[Any], APIClient], tmp_path: Path
) -> None:
    zipped_slices = write_ct_series(tmp_path / "a", count=4, seed=1)
    loose = write_ct_series(tmp_path / "b", count=3, seed=2)
    client = client_for(team["manager"])
    files = [("study.zip", zipped(tmp_path / "a")), ("notes.txt", b"not dicom")]
    files += [(s.path.name, s.path.read_bytes()) for s in loose]
    response = upload(client, *files)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["counts"]["series imported"] == 2
    assert body["counts"]["files rejected"] == 1
    (rejected,) = [f for f in body["files"] if f["status"] == "rejected"]
    assert rejected["source"] == "notes.txt" and "not a DICOM file" in rejected["reason"]
    assert {f["source"] for f in body["files"] if f["status"] == IMPORTED} >= {
        f"study.zip/export/{s.path.name}" for s in zipped_slices
    }
    for slices in (zipped_slices, loose):
        series = Series.objects.get(instances__sop_instance_uid=slices[0].sop_instance_uid)
        check_imported(series, slices)

    again = upload(client, ("study.zip", zipped(tmp_path / "a")))
    assert again.status_code == 200
    assert again.json()["series"][0]["status"] == ALREADY_IMPORTED
    nothing = upload(client, ("notes.txt", b"not dicom"), ("empty.dcm", b""))
    assert nothing.status_code == 400
    assert [f["reason"] for f in nothing.json()["files"]][1] == "empty file (0 bytes)"
    assert upload(client).status_code == 400

    annotator = client_for(team["annotator"])
    assert upload(annotator, ("notes.txt", b"x")).status_code == 403
    outsider = client_for(team["outsider"])
    assert upload(outsider, ("notes.txt", b"x")).status_code == 404


def zip_of_copies(path: Path, count: int, content: bytes) -> Path:
    """A deflated zip of ``count`` entries that each hold ``content``, compressed once and
    written by hand (zipfile would deflate every entry again: seconds for 2 GiB of zeros)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = packer.compress(content) + packer.flush()
    crc, central = zlib.crc32(content), []
    with open(path, "wb") as out:
        for i in range(count):
            name = f"series/slice{i:05d}.dcm".encode()
            sizes = (crc, len(data), len(content), len(name))
            offset = out.tell()
            # local header: version 2.0, no flags, deflate, no time, no extra field
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, *sizes, 0))
            out.write(name + data)
            # central entry: the same, no comment, disk 0, no attributes, the header's offset
            header = struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, *sizes, 0, 0, 0, 0, 0, offset
            )
            central.append(header + name)
        start = out.tell()
        out.write(b"".join(central))
        end = struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, out.tell() - start, start, 0
        )
        out.write(end)
    return path


MIB = 1024 * 1024


def test_a_zip_of_many_small_blank_entries_is_refused_before_it_is_written(
    project: Project,
    team: dict[str, Any],
    client_for: Callable[[Any], APIClient],
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,100 entries of 1 MiB of zeros (2.2 GB) in a 2.4 MB zip, against a 3 MiB upload limit:
    refused on what it declares (more than 8 times the limit), and with that cap lifted on the
    ratio every entry draws on the one grace of the archive, with nothing extracted either way.
    A zip of a real DICOM series still imports under the same limit."""
    settings.MAX_UPLOAD_BYTES = 3 * MIB
    bomb = zip_of_copies(tmp_path / "bomb.zip", 2100, bytes(MIB))
    assert bomb.stat().st_size < settings.MAX_UPLOAD_BYTES
    assert zipfile.ZipFile(bomb).read("series/slice02099.dcm") == bytes(MIB)
    work = tmp_path / "server-tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))  # where the import writes
    client = client_for(team["manager"])

    with DiskWatch(work) as disk:
        response = upload(client, ("bomb.zip", bomb.read_bytes()))
    assert response.status_code == 400, response.content
    assert "more than 8 times the upload limit" in response.json()["detail"]
    assert response.json()["files"] == [f"archives of at most {24 * MIB} bytes uncompressed in all"]
    assert disk.peak < 10 * settings.MAX_UPLOAD_BYTES, disk.peak

    monkeypatch.setattr(ingest_views, "ARCHIVE_EXPANSION", 10_000)
    with DiskWatch(work) as disk:
        response = upload(client, ("bomb.zip", bomb.read_bytes()))
    assert response.status_code == 400, response.content
    (refused,) = response.json()["files"]
    assert refused["source"] == "bomb.zip" and refused["reason"].startswith(
        "zip bomb refused: entry 'series/slice00001.dcm' inflates more than 200 times"
    )
    assert "1048576 bytes beyond that ratio in all" in refused["reason"]
    assert disk.peak < 10 * settings.MAX_UPLOAD_BYTES, disk.peak
    assert disk.held() == 0 and not Series.objects.exists()

    # The archive as a whole: 1.1 MiB of zeros within its entry's ratio and grace, but more
    # than the grace and 200 times the archive's own size.
    dense = zip_of_copies(tmp_path / "dense.zip", 1, bytes(MIB + MIB // 10))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveRefused, match=r"inflate to \d+ bytes or more, over 200 times"):
        extract_zip(dense, dest)
    assert not list(dest.iterdir())

    # A zip of a real CT series (pydicom's test files) under the same limit.
    files = Path(get_testdata_file("CT_small.dcm", read=False)).parent  # type: ignore[arg-type]
    folder = files / "dicomdirtests" / "98892001" / "CT5N"
    series_zip = zipped(folder, pattern="*")
    assert len(series_zip) < settings.MAX_UPLOAD_BYTES
    response = upload(client, ("ct.zip", series_zip))
    assert response.status_code == 201, response.content
    (series,) = response.json()["series"]
    assert series["status"] == IMPORTED and series["slices"] == 5


def test_the_management_command(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_ct_series(tmp_path / "in", count=3)
    (tmp_path / "in" / "junk.dcm").write_bytes(b"junk")
    out = io.StringIO()
    call_command("import_studies", str(tmp_path / "in"), "--project", "imaging", stdout=out)
    text = out.getvalue()
    assert "series imported: 1" in text and "files rejected: 1" in text
    assert f"rejected {tmp_path / 'in' / 'junk.dcm'}: not a DICOM file" in text
    assert "reading" in capsys.readouterr().err  # the progress bar

    with pytest.raises(CommandError) as failed:
        call_command(
            "import_studies",
            str(tmp_path / "in" / "junk.dcm"),
            "--project",
            "imaging",
            stdout=io.StringIO(),
        )
    assert failed.value.returncode == 1
    with pytest.raises(CommandError, match="no project"):
        call_command("import_studies", str(tmp_path), "--project", "nope")


@pytest.mark.skipif(not LUNG1.is_dir(), reason="../shared/data is not available")
def test_lung1_001(project: Project) -> None:
    started = time.perf_counter()
    report = studies_import(project=project, paths=[LUNG1])
    seconds = time.perf_counter() - started
    print(f"LUNG1-001 imported in {seconds:.1f} s")
    (summary,) = report.series
    assert summary.status == IMPORTED, summary.reason
    assert summary.series_id is not None and summary.volume_id is not None
    volume = Volume.objects.get(pk=summary.volume_id)
    assert volume.shape_zyx == (134, 512, 512)
    files = sorted(LUNG1.glob("*.dcm"))
    datasets = [pydicom.dcmread(p) for p in files]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # axial: z is the normal
    first = datasets[0]
    z_gap = float(datasets[1].ImagePositionPatient[2]) - float(first.ImagePositionPatient[2])
    np.testing.assert_allclose(
        volume.spacing,
        [float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), z_gap],
        rtol=1e-4,
    )
    np.testing.assert_allclose(volume.origin, [float(v) for v in first.ImagePositionPatient])
    voxels = volume_array(volume)
    for k in (0, 67, 133):
        ds = datasets[k]
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(voxels[k], hu)
    assert Instance.objects.filter(series_id=summary.series_id).count() == 134
