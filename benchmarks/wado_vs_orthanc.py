"""Our DICOMweb server against Orthanc's, on the same series, in the same run.

    python benchmarks/wado_vs_orthanc.py --series DIR [--repeats 5] [--clients 4]

Imports the series in DIR into this server (a fresh SQLite database and data folder, served by
gunicorn as in production) and into a throwaway Orthanc with its DICOMweb plugin, then fetches
from each the series metadata (WADO-RS, DICOM JSON) and every frame (WADO-RS frames, explicit VR
little endian, ``--clients`` parallel connections as a viewer's loader does). Each figure is the
median of ``--repeats`` wall times. Ends with
``RESULT wado_vs_orthanc metadata_ratio=X frames_ratio=Y`` (ours / Orthanc; < 1 is faster).
"""

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.orthanc import running_orthanc  # noqa: E402
from tests.support.servers import free_port, wait_for  # noqa: E402

FRAME_ACCEPT = (
    'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
)
SETUP = """
import sys
from pathlib import Path
from django.contrib.auth.models import Permission, User
from knox.models import AuthToken
from projects.intake.ingest import studies_import
from projects.services import project_create
user = User.objects.create_user("bench", password="bench")
user.user_permissions.add(Permission.objects.get(codename="add_project"))
user = User.objects.get(pk=user.pk)
project = project_create(user=user, name="Bench", slug="bench", modality="CT",
                         lesion_classes=[{"name": "lesion"}])
studies_import(project=project, paths=[Path(sys.argv[1])])
print(AuthToken.objects.create(user=user)[1])
"""


def timed(work: Callable[[], int], repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        size = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), size


def fetch_all(session: requests.Session, base: str, study: str, series: str, clients: int) -> int:
    """Metadata, then every frame of every instance; returns the bytes received."""
    metadata = session.get(
        f"{base}/studies/{study}/series/{series}/metadata",
        headers={"Accept": "application/dicom+json"},
        timeout=120,
    )
    metadata.raise_for_status()
    urls = []
    for instance in metadata.json():
        sop = instance["00080018"]["Value"][0]
        frames = int(instance.get("00280008", {}).get("Value", [1])[0])
        prefix = f"{base}/studies/{study}/series/{series}/instances/{sop}/frames"
        urls += [f"{prefix}/{n}" for n in range(1, frames + 1)]

    def one(url: str) -> int:
        response = session.get(url, headers={"Accept": FRAME_ACCEPT}, timeout=120)
        response.raise_for_status()
        return len(response.content)

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(one, urls))


def metadata_only(session: requests.Session, base: str, study: str, series: str) -> int:
    response = session.get(
        f"{base}/studies/{study}/series/{series}/metadata",
        headers={"Accept": "application/dicom+json"},
        timeout=120,
    )
    response.raise_for_status()
    return len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    files = sorted(p for p in args.series.rglob("*") if p.is_file())

    with tempfile.TemporaryDirectory(prefix="bench-wado-") as tmp, running_orthanc() as orthanc:
        env = {
            **os.environ,
            "ANNOTATOR_DATA_DIR": tmp,
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
        }
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        setup = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n" + SETUP, str(args.series)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        token = setup.stdout.strip().splitlines()[-1]
        orthanc.upload(files)

        port = free_port()
        gunicorn = [sys.executable, "-m", "gunicorn", "annotator.wsgi"]
        gunicorn += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"]
        server = subprocess.Popen([*gunicorn, "--log-level", "warning"], env=env, cwd=REPO)
        try:
            ours = requests.Session()
            ours.headers["Authorization"] = f"Token {token}"
            ours_base = f"http://127.0.0.1:{port}/dicomweb"
            wait_for(f"{ours_base}/studies", session=ours, process=server)
            theirs = requests.Session()
            study = ours.get(f"{ours_base}/studies", timeout=30).json()[0]["0020000D"]["Value"][0]
            found = ours.get(f"{ours_base}/studies/{study}/series", timeout=30).json()
            series = next(s for s in found if s["00080060"]["Value"][0] != "RTSTRUCT")
            series_uid = series["0020000E"]["Value"][0]
            results = {}
            for name, session, base in [
                ("orthanc", theirs, orthanc.dicomweb),
                ("ours", ours, ours_base),
            ]:
                fetch_all(session, base, study, series_uid, args.clients)  # warm caches
                meta_s, meta_bytes = timed(
                    functools.partial(metadata_only, session, base, study, series_uid),
                    args.repeats,
                )
                frames_s, frame_bytes = timed(
                    functools.partial(fetch_all, session, base, study, series_uid, args.clients),
                    args.repeats,
                )
                results[name] = (meta_s, frames_s)
                print(
                    f"{name:8s} metadata {meta_s * 1000:8.1f} ms ({meta_bytes} B)   "
                    f"metadata+frames {frames_s * 1000:8.1f} ms ({frame_bytes} B)"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    metadata_ratio = results["ours"][0] / results["orthanc"][0]
    frames_ratio = results["ours"][1] / results["orthanc"][1]
    ratios = f"metadata_ratio={metadata_ratio:.2f} frames_ratio={frames_ratio:.2f}"
    print(f"RESULT wado_vs_orthanc {ratios}")


if __name__ == "__main__":
    main()
