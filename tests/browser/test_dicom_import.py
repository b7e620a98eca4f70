"""A DICOM series of 300 loose files imported from the browser's import page in one request.

The page sends every chosen file in one multipart request (frontend/src/api/upload.ts): a series
must arrive whole to be checked. 300 files is more than Django's default count of files per
request (100); 38 MiB is more than it keeps in memory, so the server streams every slice to a
temporary file (annotator.core.uploads). Screenshot in test-artifacts/browser/ (or
$BROWSER_ARTIFACTS).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from annotator.imaging.dicom.synthesis import iter_instances, to_bytes
from annotator.models import Instance, Series
from inference.engine.phantom import make_ct_phantom, to_sitk
from projects.models import Project, Task
from tests.browser.harness import BrowserRunner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SLICES = 300


def write_series(folder: Path) -> list[str]:
    """One CT series (the project's phantom, 256 x 256 slices) as loose DICOM files."""
    folder.mkdir()
    phantom = make_ct_phantom(seed=5, shape=(SLICES, 256, 256), n_lesions=1)
    instances = iter_instances(
        to_sitk(phantom),
        modality="CT",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
        series_description="Browser import",
    )
    paths = []
    for k, ds in enumerate(instances):
        path = folder / f"IM{k:05d}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(str(path))
    return paths


def test_a_series_of_300_files_imports_from_the_import_page(
    run_browser: BrowserRunner,
    tmp_path: Path,
    media_root: Path,
    make_project: Callable[..., Project],
    make_user: Callable[..., Any],
) -> None:
    manager = make_user("boss", can_create_projects=True)
    project = make_project("alpha", manager=manager)
    files = write_series(tmp_path / "series")
    assert sum(Path(p).stat().st_size for p in files) > 32 * 1024 * 1024

    record = run_browser(
        "dicom_import.mjs",
        username="boss",
        password="pw-boss",
        slug="alpha",
        files=files,
        timeout=180,
    )
    result = record["result"]
    assert "error" not in result, result
    assert len(record["artifacts"]) == 1, record["artifacts"]
    assert result["plan"].startswith("300 DICOM files or archives"), result["plan"]
    assert result["summary"] == "1 series imported · 300 files read", result
    assert "300 files imported" in result["chips"], result["chips"]
    series = Series.objects.get(study__project=project)
    assert series.description == "Browser import"
    assert Instance.objects.filter(series=series).count() == SLICES
    assert Task.objects.filter(series=series).count() == 1


def test_more_files_than_the_cap_say_so_on_the_import_page(
    settings: Any,
    run_browser: BrowserRunner,
    tmp_path: Path,
    make_project: Callable[..., Project],
    make_user: Callable[..., Any],
) -> None:
    """Past ANNOTATOR_MAX_UPLOAD_FILES (100 here), the page shows the server's reason."""
    settings.MAX_UPLOAD_FILES = 100
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 101
    manager = make_user("boss", can_create_projects=True)
    make_project("alpha", manager=manager)
    files = []
    for k in range(101):
        path = tmp_path / f"IM{k:05d}.dcm"
        path.write_bytes(b"\0" * 200)
        files.append(str(path))
    record = run_browser(
        "dicom_import.mjs", username="boss", password="pw-boss", slug="alpha", files=files
    )
    error = record["result"]["error"]
    assert error["title"] == "The DICOM import failed", error
    assert "more than 100 files" in error["message"], error
    assert "ANNOTATOR_MAX_UPLOAD_FILES" in error["message"], error
    assert not Instance.objects.exists()
