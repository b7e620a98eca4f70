"""Import one file through the real service in a fresh process; report time and peak memory.

    python tests/annotator/hostile_probe.py {volume|dicom} PROJECT_SLUG FILE
    python tests/annotator/hostile_probe.py labels PROJECT_SLUG SERIES LABEL_FILE
    python tests/annotator/hostile_probe.py scan - FILE

``labels`` imports the DICOM series SERIES first (not measured), then the label object
LABEL_FILE (RTSTRUCT, SEG) alone: the seconds and the peak (reset after the series) are its own.
``scan`` runs the DICOM scan alone (annotator.imaging.dicom.scan, no database, no Django): each
file's status and reason.

The test database to use comes as JSON in PROBE_DATABASE (the test's own connection settings,
so the project it committed is there). Prints one JSON line: the outcome, the seconds the import
call took (``seconds``, wall clock) and the CPU seconds its process spent in it (``cpu_seconds``:
what the tests bound, as it does not grow when other processes share the machine's cores), and the
process's peak resident memory (VmHWM) in MB, before and after the call.
Tests run it with :func:`run_probe`.
"""

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def run_probe(
    *args: str, database: bool = True, env: Mapping[str, str] | None = None, timeout: int = 300
) -> dict[str, Any]:
    """Run this script with ``args`` in a fresh process and return its JSON line; ``database``:
    hand it the calling test's connection settings (PROBE_DATABASE); ``env``: more variables."""
    extra = dict(env or {})
    if database:
        from django.db import connection

        settings = connection.settings_dict
        keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        extra["PROBE_DATABASE"] = json.dumps({key: settings[key] for key in keys})
    done = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **extra},
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measured(result: Mapping[str, Any]) -> str:
    """A probe's figures for a test's output: wall and CPU seconds, peak RSS."""
    return (
        f"{result['seconds']:.3f} s ({result['cpu_seconds']:.3f} s CPU), "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start VmHWM again from the current resident size (Linux clear_refs, value 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def scan_only(path: Path) -> None:
    from annotator.imaging.dicom import scanned

    before = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    with scanned([path], build=False) as result:
        files = [{"status": f.status, "reason": f.reason} for f in result.files]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        json.dumps(
            {
                "files": files,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "rss_before_mb": before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def main() -> None:
    kind, slug, name = sys.argv[1:4]
    path = Path(name)
    # A safety net: a regression fails with MemoryError here rather than exhausting the machine.
    resource.setrlimit(resource.RLIMIT_AS, (8 * 1024**3, 8 * 1024**3))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    if kind == "scan":
        scan_only(path)
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = "annotator.settings_test"
    import django
    from django.conf import settings

    settings.DATABASES["default"].update(json.loads(os.environ["PROBE_DATABASE"]))
    django.setup()
    from annotator.core.errors import DomainError
    from projects.intake.image_import import volume_import
    from projects.intake.ingest import studies_import
    from projects.models import Project

    project = Project.objects.get(slug=slug)
    if kind == "labels":
        series = studies_import(project=project, paths=[path], display_names={path: path.name})
        assert series.imported_series == 1, series.to_dict()
        path = Path(sys.argv[4])
        reset_peak_rss()
    before = peak_rss_mb()
    outcome: dict[str, object]
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind == "volume":
        try:
            with open(path, "rb") as f:
                imported = volume_import(project=project, file=f, filename=path.name)
            outcome = {"status": "imported", "series": imported.series.pk}
        except DomainError as exc:
            outcome = {"status": "refused", "detail": exc.message, "fields": exc.fields}
    else:
        report = studies_import(project=project, paths=[path], display_names={path: path.name})
        outcome = {"status": "report", "report": report.to_dict()}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        json.dumps(
            {
                **outcome,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "rss_before_mb": before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
