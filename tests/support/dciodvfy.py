"""dicom3tools' dciodvfy: the IOD checker the generated DICOM must pass (errors, not warnings)."""

import shutil
import subprocess
from pathlib import Path

import pytest

DCIODVFY = shutil.which("dciodvfy")

needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed"
)


def iod_errors(path: Path) -> list[str]:
    """The lines dciodvfy starts with "Error" for the file at ``path`` ([] when it is valid);
    an object it cannot match to an IOD gives "Error - Information Object Not found"."""
    assert DCIODVFY is not None
    run = subprocess.run(
        [DCIODVFY, "-new", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def assert_iod_valid(path: Path) -> None:
    """No dciodvfy error for ``path``; skips (after the checks that ran before) without it."""
    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    assert iod_errors(path) == []
