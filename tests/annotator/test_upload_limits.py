"""The upload limit holds while the body streams in, through a real gunicorn server.

The server runs as in production (``python -m gunicorn annotator.wsgi``, threads) on the test
database, with ``ANNOTATOR_MAX_UPLOAD_BYTES`` set to 1 MiB and its temporary files in a folder
of the test's, which a thread measures while the upload is sent: what the server wrote to disk
is what it holds there at its fullest.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from pydicom.data import get_testdata_file

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


@pytest.fixture
def gunicorn(tmp_path: Path, media_root: Path) -> Iterator[dict[str, Any]]:
    """gunicorn on the test database, a 1 MiB upload limit, temporary files in ``tmp``."""
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    port = free_port()
    env = {
        **os.environ,
        # The test settings: their password hasher is the one the test users were made with.
        "DJANGO_SETTINGS_MODULE": "annotator.settings_test",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ANNOTATOR_DATA_DIR": str(settings.DATA_DIR),
        "ANNOTATOR_MEDIA_ROOT": str(media_root),
        "ANNOTATOR_MAX_UPLOAD_BYTES": str(LIMIT),
        "TMPDIR": str(tmp),
    }
    command = [sys.executable, "-m", "gunicorn", "annotator.wsgi", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--threads", "2", "--no-control-socket", "--timeout", "60"]
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/schema/", process=process, timeout=60, request_timeout=10)
        yield {"base": base, "tmp": tmp, "log": log}
    finally:
        process.terminate()
        process.wait(timeout=30)


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
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

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
    settings: Any, tmp_path: Path, workspace: dict[str, Any], lesion: dict[str, Any]
) -> None:
    """Volumes (file and labels), DICOM imports and masks: a 400 naming the field, no
    temporary file left, with files on disk (no in-memory handler) as large uploads are."""
    settings.MAX_UPLOAD_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    os.mkdir(settings.FILE_UPLOAD_TEMP_DIR)
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
        assert not os.listdir(settings.FILE_UPLOAD_TEMP_DIR), url


def _upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)
