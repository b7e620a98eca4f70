"""The Python half of the browser-test harness: runs a Node scenario (tests/browser/*.mjs, built on
harness.mjs) against the test's live server in Debian's headless Chromium and returns its record.

A test asks for the ``run_browser`` fixture (tests/browser/conftest.py; it needs a transactional
database, since the live server answers from another thread) and calls it with a scenario script
(a path relative to tests/browser/; how to write one: the top of harness.mjs) and the parameters
the script reads, as keyword arguments that must be JSON-serialisable::

    pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

    def test_something(run_browser):
        record = run_browser("dashboard.mjs", username="mgr", password="pw", slug="liver")
        assert record["result"]["charts"] ...

The record is harness.mjs's ``result.json``: ``result`` (what the scenario returned), ``console``,
``page_errors``, ``failed_requests``, ``csp_violations``, ``timings``, ``screenshots`` (PNGs in
``out_dir``, under the test's tmp_path) and ``artifacts`` (the paths of their copies, with
result.json beside them, in ``$BROWSER_ARTIFACTS`` or test-artifacts/browser/: a folder per test
and run, emptied first).
A scenario that throws, an uncaught page error (unless ``allow_page_errors=True``) or a failed
request, network error or HTTP 5xx (unless ``allow_failed_requests=True``), or anything the
page's Content-Security-Policy blocked (always), fails the test with the scenario's error, the
browser console, the failed requests and the screenshots' paths.
``timeout`` (seconds, default 120) bounds the whole Node run; the Chromium processes go with it.

Chromium missing: the test is skipped, except in CI (``CI=true``), where it fails.
"""

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FRONTEND = REPO / "frontend"
DEFAULT_EXECUTABLE = "/usr/bin/chromium"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def artifacts_root() -> Path:
    return Path(os.environ.get("BROWSER_ARTIFACTS") or REPO / "test-artifacts" / "browser")


def browser_executable() -> str:
    """Debian's Chromium (``BROWSER_EXECUTABLE`` overrides); skips, or fails in CI, without it."""
    executable = os.environ.get("BROWSER_EXECUTABLE") or DEFAULT_EXECUTABLE
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        reason = (
            f"browser tests need Chromium at {executable} "
            "(Debian package `chromium`; .ci/run installs it)"
        )
        if in_ci():
            pytest.fail(reason + " and CI=true: it must be installed", pytrace=False)
        pytest.skip(reason)
    return executable


def node_toolchain() -> str:
    """The `node` binary, with playwright-core installed and the front end built."""
    node = shutil.which("node")
    problems = []
    if node is None:
        problems.append("`node` is not on PATH")
    if not (FRONTEND / "node_modules" / "playwright-core" / "package.json").is_file():
        problems.append("playwright-core is not in frontend/node_modules (run `make frontend`)")
    if not (Path(settings.FRONTEND_DIST) / "index.html").is_file():
        problems.append("the front end is not built (run `make frontend`)")
    if problems:
        pytest.fail("browser tests: " + "; ".join(problems), pytrace=False)
    assert node is not None
    return node


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def run_scenario(
    node: str, script: Path, args: dict[str, Any], out: Path, timeout: float
) -> tuple[dict[str, Any], int, str]:
    """Run one Node scenario; its result.json record (or {"ok": False}), exit code, output tail."""
    # its own process group, so that a timeout also ends the Chromium processes it started
    process = subprocess.Popen(
        [node, str(script), json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output = f"{output}\ntimed out after {timeout} s"
    result_file = out / "result.json"
    record: dict[str, Any] = (
        json.loads(result_file.read_text()) if result_file.is_file() else {"ok": False}
    )
    return record, process.returncode, output[-4000:]


class BrowserRunner:
    """``run_browser(script, **params) -> record``; see the module docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        out_dir: Path,
        artifacts_dir: Path,
        executable: str,
        node: str,
    ) -> None:
        self.base_url = base_url
        self.out_dir = out_dir
        self.artifacts_dir = artifacts_dir
        self.executable = executable
        self.node = node
        self.runs = 0
        shutil.rmtree(artifacts_dir, ignore_errors=True)

    def __call__(
        self,
        script: str,
        *,
        timeout: float = 120,
        allow_page_errors: bool = False,
        allow_failed_requests: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        path = Path(script) if Path(script).is_absolute() else HERE / script
        assert path.is_file(), f"no browser scenario {path}"
        self.runs += 1
        name = safe_name(path.stem if self.runs == 1 else f"{path.stem}-{self.runs}")
        out = self.out_dir / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        args = {
            "base_url": self.base_url,
            "out_dir": str(out),
            "executable": self.executable,
            "frontend_dir": str(FRONTEND),
            **params,
        }
        record, returncode, output = run_scenario(self.node, path, args, out, timeout)
        record["out_dir"] = str(out)
        record["artifacts"] = self._keep(out, name, record.get("screenshots") or [])

        problems = []
        if returncode != 0 or not record.get("ok"):
            problems.append(record.get("error") or f"node exited without a result:\n{output}")
        if record.get("page_errors") and not allow_page_errors:
            problems.append("uncaught errors in the page:\n" + "\n".join(record["page_errors"]))
        if record.get("failed_requests") and not allow_failed_requests:
            problems.append("requests failed (network error or HTTP 5xx), listed below")
        if record.get("csp_violations"):
            problems.append(
                "the Content-Security-Policy blocked:\n"
                + "\n".join(f"  {v['url']}: {v['text']}" for v in record["csp_violations"])
            )
        if problems:
            console = "\n".join(
                f"  [{m['type']}] {m['text']}" for m in record.get("console", [])[-30:]
            )
            failed = "\n".join(
                f"  {r['method']} {r['url']}: {r['failure']}"
                for r in record.get("failed_requests", [])
            )
            pytest.fail(
                f"browser scenario {path.name} failed:\n"
                + "\n".join(problems)
                + (f"\nconsole:\n{console}" if console else "")
                + (f"\nfailed requests:\n{failed}" if failed else "")
                + f"\nscreenshots: {record['artifacts']}\nnode output:\n{output}",
                pytrace=False,
            )
        return record

    def _keep(self, out: Path, name: str, screenshots: list[str]) -> list[str]:
        """Copies the run's screenshots and result.json to the artifacts folder."""
        target = self.artifacts_dir / name
        target.mkdir(parents=True, exist_ok=True)
        kept = []
        for shot in screenshots:
            source = Path(shot)
            if source.is_file():
                kept.append(str(shutil.copy2(source, target / source.name)))
        if (out / "result.json").is_file():
            shutil.copy2(out / "result.json", target / "result.json")
        return kept
