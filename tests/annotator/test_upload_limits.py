"""The upload limit holds while the body streams in, through a real gunicorn server.

The server runs as in production (``python -m gunicorn annotator.wsgi``, threads) on the test
database, with ``ANNOTATOR_MAX_UPLOAD_BYTES`` set to 1 MiB and its temporary files in a folder
of the test's, which a thread measures while the upload is sent: what the server wrote to disk
is what it holds there at its fullest.
"""

import errno
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from annotator.annotation.masks import encode_raw_gzip
from annotator.core.uploads import TemporaryPathUploadedFile
from annotator.imaging.dicom.synthesis import iter_instances, to_bytes
from annotator.models import Instance, MaskVersion
from inference.engine.phantom import make_ct_phantom, to_sitk
from projects.models import Project
from tests.support.api import Api
from tests.support.disk import DiskWatch
from tests.support.servers import free_port, wait_for
from tests.support.worker import REPO, database_url

LIMIT = 1024 * 1024
BOUNDARY = "annotator-test-boundary"


class StreamedUpload:
    """A multipart body with one file of ``size`` zero bytes, made as it is sent (the test
    never holds it), with its true length (sent as ``Content-Length``)."""

    def __init__(self, field: str, size: int) -> None:
        self.head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
            'filename="big.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.size = size
        self.sent = 0

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def read(self, n: int = -1) -> bytes:
        n = len(self) - self.sent if n < 0 else min(n, len(self) - self.sent)
        out = bytearray()
        while len(out) < n:
            at = self.sent + len(out)
            want = n - len(out)
            if at < len(self.head):
                out += self.head[at : at + want]
            elif at < len(self.head) + self.size:
                out += bytes(min(want, len(self.head) + self.size - at))
            else:
                start = at - len(self.head) - self.size
                out += self.tail[start : start + want]
        self.sent += len(out)
        return bytes(out)


@contextmanager
def running_gunicorn(
    tmp_path: Path,
    media_root: Path,
    *,
    env: dict[str, str] | None = None,
    open_files: tuple[int, int | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """gunicorn on the test database, its temporary files in ``tmp``; ``open_files``: the
    (soft, hard) RLIMIT_NOFILE it starts with (hard None: this process's)."""
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    port = free_port()
    server_env = {
        **os.environ,
        # The test settings: their password hasher is the one the test users were made with.
        "DJANGO_SETTINGS_MODULE": "annotator.settings_test",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ANNOTATOR_DATA_DIR": str(settings.DATA_DIR),
        "ANNOTATOR_MEDIA_ROOT": str(media_root),
        "TMPDIR": str(tmp),
        **(env or {}),
    }

    def limit_open_files() -> None:  # in the child, before gunicorn starts
        if open_files is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files[0], open_files[1] or hard))

    command = [sys.executable, "-m", "gunicorn", "annotator.wsgi", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--threads", "2", "--no-control-socket", "--timeout", "120"]
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_open_files,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/schema/", process=process, timeout=60, request_timeout=10)
        yield {"base": base, "tmp": tmp, "log": log, "pid": process.pid}
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def gunicorn(tmp_path: Path, media_root: Path) -> Iterator[dict[str, Any]]:
    """gunicorn with a 1 MiB upload limit."""
    env = {"ANNOTATOR_MAX_UPLOAD_BYTES": str(LIMIT)}
    with running_gunicorn(tmp_path, media_root, env=env) as server:
        yield server


@pytest.fixture
def disk_uploads(settings: Any, tmp_path: Path) -> Path:
    """Every uploaded file kept on disk (no in-memory handler), as large uploads are, in a
    folder of the test's: returned, for the test to see what is left there."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.mark.django_db(transaction=True)
def test_uploads_over_the_limit_are_refused_while_streaming(
    gunicorn: dict[str, Any], make_project: Callable[..., Project], make_user: Callable[..., Any]
) -> None:
    """200 MiB against a 1 MiB limit: refused on its declared length, nothing written; 1.5 MiB
    declared within the margin for form fields: refused once 1 MiB has arrived. Both answers
    name the field, leave no temporary file, and the server answers the next request."""
    manager = make_user("boss", can_create_projects=True)
    make_project("alpha", manager=manager)
    api = Api(gunicorn["base"], "boss", "pw-boss")
    url = f"{gunicorn['base']}/api/projects/alpha/imports/"
    # The server stops reading a refused body; gunicorn then closes the connection after its
    # answer (which cannot say so): a client must not reuse it for the next request.
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Connection": "close"}

    for size in (200 * 1024 * 1024, LIMIT + LIMIT // 2):
        body = StreamedUpload("files", size)
        with DiskWatch(gunicorn["tmp"]) as disk:
            started = time.monotonic()
            response = api.session.post(url, data=body, headers=headers, timeout=60)
            elapsed = time.monotonic() - started
        log = gunicorn["log"].read_text(errors="replace")
        assert response.status_code == 400, (response.text, log)
        assert "at most 1048576 bytes" in response.json()["files"][0], response.json()
        assert disk.peak < 2 * LIMIT, f"{disk.peak} bytes on disk for a {size}-byte upload"
        assert disk.held() == 0, list(gunicorn["tmp"].rglob("*"))
        assert body.sent < size / 2 or size < 2 * LIMIT, f"the client sent {body.sent} bytes"
        assert elapsed < 10
        assert api.session.get(f"{gunicorn['base']}/api/projects/", timeout=30).status_code == 200

    # Within the limit, the same server imports a real DICOM file.
    path = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    with open(path, "rb") as f:
        response = api.session.post(url, files={"files": ("ct.dcm", f)}, timeout=60)
    assert response.status_code == 201, response.text
    assert not list(gunicorn["tmp"].rglob("*.upload"))


@pytest.mark.django_db
def test_every_upload_endpoint_stops_at_the_limit(
    settings: Any, disk_uploads: Path, workspace: dict[str, Any], lesion: dict[str, Any]
) -> None:
    """Volumes (file and labels), DICOM imports and masks: a 400 naming the field, no
    temporary file left, with files on disk (no in-memory handler) as large uploads are."""
    settings.MAX_UPLOAD_BYTES = LIMIT
    manager = Client()
    manager.force_login(workspace["manager"])
    annotator = Client()
    annotator.force_login(workspace["annotator"])
    small = b"\0" * 1000
    big = b"\0" * (LIMIT + 1)
    cases: list[tuple[Client, str, dict[str, Any], str]] = [
        (manager, "/api/projects/alpha/volumes/", {"file": ("a.nii.gz", big)}, "file"),
        (
            manager,
            "/api/projects/alpha/volumes/",
            {"file": ("a.nii.gz", small), "labels": ("l.nii.gz", big)},
            "labels",
        ),
        (manager, "/api/projects/alpha/imports/", {"files": ("a.dcm", big)}, "files"),
        (
            annotator,
            f"/api/lesions/{lesion['id']}/masks/",
            {"parent": "", "mask": ("m.gz", big)},
            "mask",
        ),
    ]
    for client, url, parts, field in cases:
        data = {
            name: _upload(*value) if isinstance(value, tuple) else value
            for name, value in parts.items()
        }
        response = client.post(url, data)
        assert response.status_code == 400, (url, response.content)
        assert field in response.json(), (url, response.json())
        assert not os.listdir(disk_uploads), url


def _upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


SLICES = 300


@pytest.fixture(scope="module")
def ct_series() -> list[tuple[str, bytes]]:
    """One CT series of 300 loose slices of 256 x 256 (the project's phantom as generated DICOM),
    38 MiB: more than Django keeps in memory (FILE_UPLOAD_MAX_MEMORY_SIZE, 32 MiB), so the
    server writes every slice to a temporary file of its own."""
    phantom = make_ct_phantom(seed=11, shape=(SLICES, 256, 256), n_lesions=1)
    instances = iter_instances(
        to_sitk(phantom),
        modality="CT",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
    )
    return [(f"IM{k:05d}", to_bytes(ds)) for k, ds in enumerate(instances)]


def worker_open_files(master: int) -> tuple[int, int]:
    """The (soft, hard) open-file limits of the gunicorn worker under ``master``."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # a process that ended meanwhile
        if f"\nPPid:\t{master}\n" in text:
            limits = (status.parent / "limits").read_text()
            line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no gunicorn worker under process {master}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "open_files", [(256, None), (256, 256)], ids=["soft-limit-256", "hard-limit-256"]
)
def test_a_series_of_300_loose_files_imports_in_one_request(
    open_files: tuple[int, int | None],
    ct_series: list[tuple[str, bytes]],
    tmp_path: Path,
    media_root: Path,
    make_project: Callable[..., Project],
    make_user: Callable[..., Any],
) -> None:
    """300 slices in one request, through gunicorn started with 256 open files at most: more
    files than Django's default count (100) and than the server may hold open. A soft limit of
    256 is raised to the hard one when the web app starts; with the hard limit at 256 too,
    the import still succeeds, since no descriptor stays open per received file."""
    manager = make_user("boss", can_create_projects=True)
    make_project("alpha", manager=manager)
    with running_gunicorn(tmp_path, media_root, open_files=open_files) as server:
        soft, hard = worker_open_files(server["pid"])
        if open_files[1] is None:
            assert soft == hard > 256, (soft, hard)
        else:
            assert soft == hard == 256, (soft, hard)
        api = Api(server["base"], "boss", "pw-boss")
        url = f"{server['base']}/api/projects/alpha/imports/"
        parts = [("files", (name, content, "application/dicom")) for name, content in ct_series]
        started = time.monotonic()
        response = api.session.post(url, files=parts, timeout=300)
        elapsed = time.monotonic() - started
        log = server["log"].read_text(errors="replace")
        assert response.status_code == 201, (response.text[:2000], log[-4000:])
        counts = response.json()["counts"]
        assert counts["files imported"] == SLICES, counts
        assert counts["series imported"] == 1, counts
        assert Instance.objects.filter(series__study__project__slug="alpha").count() == SLICES
        assert not list(server["tmp"].rglob("*")), "temporary files left behind"
        assert elapsed < 240
        print(f"{SLICES} files, {open_files}: 201 in {elapsed:.1f} s")


@pytest.mark.django_db
def test_more_files_than_the_cap_are_refused_naming_the_field(
    settings: Any,
    disk_uploads: Path,
    make_project: Callable[..., Project],
    make_user: Callable[..., Any],
    client_for: Callable[[Any], Any],
) -> None:
    """One file past ANNOTATOR_MAX_UPLOAD_FILES: a 400 naming ``files`` and the setting, before
    that file is read, through a token or the browser's session (whose CSRF check reads the
    form); nothing kept, nothing imported. At the cap, the files are imported."""
    settings.MAX_UPLOAD_FILES = 5
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 6
    manager = make_user("boss", can_create_projects=True)
    make_project("alpha", manager=manager)
    token = client_for(manager)
    session = Client(enforce_csrf_checks=True)
    session.force_login(manager)
    session.cookies["csrftoken"] = "c" * 32  # the check then looks for the form's token
    path = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    content = path.read_bytes()
    url = "/api/projects/alpha/imports/"

    for client in (token, session):
        files = [_upload(f"{i}.dcm", content) for i in range(6)]
        response = client.post(url, {"files": files})
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["files"] == ["at most 5 files in one request"], body
        assert "ANNOTATOR_MAX_UPLOAD_FILES" in body["detail"], body
        assert not os.listdir(disk_uploads)
        assert not Instance.objects.exists()

    client = token

    files = [_upload(f"{i}.dcm", content) for i in range(5)]
    response = client.post(url, {"files": files})
    assert response.status_code == 201, response.content
    assert response.json()["counts"]["files imported"] == 1  # and 4 duplicates skipped
    assert not os.listdir(disk_uploads)


@pytest.mark.django_db
def test_no_descriptor_left_is_a_400_naming_files(
    disk_uploads: Path,
    make_project: Callable[..., Project],
    make_user: Callable[..., Any],
) -> None:
    """A process out of file descriptors (EMFILE: every one up to its soft limit taken) answers
    an upload with a 400 naming ``files``, not a 500, and keeps no temporary file."""
    manager = make_user("boss", can_create_projects=True)
    make_project("alpha", manager=manager)
    client = Client()
    client.force_login(manager)
    files = [_upload(f"{i}.dcm", b"\0" * 1000) for i in range(3)]
    # A first request sets up what a server sets up once (middleware, static files' index).
    assert client.get("/api/projects/alpha/").status_code == 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    taken: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
    try:
        with pytest.raises(OSError) as full:
            while True:
                taken.append(os.open(os.devnull, os.O_RDONLY))
        assert full.value.errno == errno.EMFILE
        response = client.post("/api/projects/alpha/imports/", {"files": files})
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["files"] == ["more files than the server can open at once"], body
    assert "several requests" in body["detail"], body
    assert not os.listdir(disk_uploads)


@pytest.mark.django_db
def test_every_upload_endpoint_reads_files_kept_on_disk(
    disk_uploads: Path,
    workspace: dict[str, Any],
    lesion: dict[str, Any],
    phantom: Any,
    phantom_file: Path,
) -> None:
    """Volumes, DICOM imports and masks read their files from the disk handler (each file closed
    when received, opened again when read); every temporary file is gone after the request."""
    manager = Client()
    manager.force_login(workspace["manager"])
    annotator = Client()
    annotator.force_login(workspace["annotator"])
    volume = _upload("phantom.nii.gz", phantom_file.read_bytes())
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()  # type: ignore[arg-type]
    mask = _upload("mask.raw.gz", encode_raw_gzip(phantom.lesion_masks[0]))
    cases: list[tuple[Client, str, dict[str, Any]]] = [
        (manager, "/api/projects/alpha/volumes/", {"file": volume}),
        (manager, "/api/projects/alpha/imports/", {"files": [_upload("a.dcm", ct)]}),
        (
            annotator,
            f"/api/lesions/{lesion['id']}/masks/",
            {"parent": "", "encoding": "raw-gzip", "mask": mask},
        ),
    ]
    for client, url, data in cases:
        response = client.post(url, data)
        assert response.status_code == 201, (url, response.content)
        assert not os.listdir(disk_uploads), url
    assert MaskVersion.objects.get().voxel_count == int(phantom.lesion_masks[0].sum())


def test_an_uploaded_file_on_disk_holds_a_descriptor_only_while_read(
    settings: Any, tmp_path: Path
) -> None:
    """TemporaryPathUploadedFile: written, released (no descriptor, file kept), read again
    read-only by chunks() and open(), deleted by close(); never opened by the client's name."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    (tmp_path / "cwd").mkdir()
    upload = TemporaryPathUploadedFile("manage.py", "application/dicom", None)
    upload.write(b"abc" * 1000)
    upload.size = 3000
    path = Path(upload.temporary_file_path())
    assert path.parent == tmp_path and path.name.endswith(".upload.py")
    upload.release()
    assert upload.closed and path.stat().st_size == 3000
    assert b"".join(upload.chunks(1024)) == b"abc" * 1000
    assert not upload.closed
    upload.release()
    assert upload.open().read(3) == b"abc"  # the temporary file, not ./manage.py
    with pytest.raises(ValueError):
        upload.open("wb")
    upload.close()
    assert not path.exists() and upload.closed
    with pytest.raises(ValueError):
        upload.read()
    upload.close()  # twice is fine
