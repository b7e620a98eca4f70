"""A real Orthanc PACS with its DICOMweb plugin on loopback, for tests and benchmarks.

Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them); code that needs
it skips when the binary is absent.
"""

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.servers import free_port, wait_for

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def available() -> bool:
    return Path(ORTHANC).exists() and DICOMWEB_PLUGIN.exists()


@dataclass
class Orthanc:
    url: str

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, paths: Iterable[Path]) -> int:
        """Store DICOM files through Orthanc's REST API; returns how many it accepted."""
        stored = 0
        with requests.Session() as session:
            for path in paths:
                response = session.post(f"{self.url}/instances", data=path.read_bytes(), timeout=60)
                response.raise_for_status()
                stored += 1
        return stored


@contextmanager
def running_orthanc() -> Iterator[Orthanc]:
    """Start a throwaway Orthanc (its own storage, HTTP on a free loopback port, no DICOM port)."""
    with tempfile.TemporaryDirectory(prefix="orthanc-") as tmp:
        port = free_port()
        config = {
            "Name": "test-pacs",
            "StorageDirectory": f"{tmp}/db",
            "IndexDirectory": f"{tmp}/db",
            "HttpPort": port,
            "HttpBindAddress": "127.0.0.1",
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        with open(Path(tmp) / "orthanc.log", "wb") as log:
            process = subprocess.Popen(
                [ORTHANC, str(Path(tmp) / "config.json")], stdout=log, stderr=log
            )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for(f"{url}/system", process=process)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{(Path(tmp) / 'orthanc.log').read_text()}") from exc
            yield Orthanc(url)
        finally:
            process.terminate()
            process.wait(timeout=30)
