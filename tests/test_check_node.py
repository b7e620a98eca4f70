"""`make run` checks Node.js first: frontend/scripts/check-node.mjs against package.json."""

import json
import shutil
import subprocess

import pytest

from tests.support.servers import REPO

SCRIPT = REPO / "frontend" / "scripts" / "check-node.mjs"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")


def check(version: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["node", str(SCRIPT), *([version] if version else [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_the_range_is_what_vite_and_vitest_support() -> None:
    engines = json.loads((REPO / "frontend" / "package.json").read_text())["engines"]
    assert engines == {"node": "^20.19.0 || ^22.12.0 || >=24.0.0"}


@pytest.mark.parametrize("version", ["20.19.0", "20.20.2", "v22.12.0", "22.13.1", "24.0.0", "26.1"])
def test_a_supported_node_passes_quietly(version: str) -> None:
    result = check(version)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("version", ["18.20.4", "20.18.3", "21.7.3", "22.11.0", "23.11.0"])
def test_another_node_stops_with_one_message(version: str) -> None:
    result = check(version)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"Node.js {version} cannot build the front end: it needs ^20.19.0 || ^22.12.0 || >=24.0.0"
    )


def test_the_node_running_the_tests_passes() -> None:
    assert check().returncode == 0
