"""The Content-Security-Policy against the product's own pages, in headless Chromium.

Every browser test fails on a CSP violation (harness.mjs records Chromium's report of each);
this one visits the pages no other test opens: the login form, the locked-out page, the app,
a task's workspace, Swagger UI and ReDoc, and the admin's index, lists and forms.
"""

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from tests.browser.harness import BrowserRunner
from tests.support.api import project_with_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def directive_of(policy: str, name: str) -> str:
    """The sources of one directive of a policy header."""
    for directive in policy.split(";"):
        key, _, sources = directive.strip().partition(" ")
        if key == name:
            return sources
    raise AssertionError(f"{name} is not in {policy}")


def test_every_page_keeps_to_its_content_security_policy(
    run_browser: BrowserRunner, live_server: Any, phantom_file: Any, settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    project = {"name": "Csp", "slug": "csp", "modality": "CT", "lesion_classes": [{"name": "t"}]}
    api = project_with_team(live_server.url, project, ann="annotator")
    with open(phantom_file, "rb") as f:
        api["mgr"].call("POST", "/projects/csp/volumes/", 201, files={"file": f})
    task = api["ann"].call("POST", "/projects/csp/tasks/next/").json()
    get_user_model().objects.create_superuser("root", "root@example.org", "root-pw")

    record = run_browser(
        "csp.mjs",
        username="ann",
        password="ann-pw",
        task_id=task["id"],
        admin="root",
        admin_password="root-pw",
        locked_user="mgr",
        failures=3,
    )
    pages = record["result"]
    assert record["csp_violations"] == []
    for name in ("login", "app", "workspace", "docs", "redoc", "admin", "admin_users"):
        assert pages[name]["status"] == 200, name
        policy = pages[name]["policy"]
        assert policy is not None and "default-src 'self'" in policy, (name, policy)
        assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy, name
    # inline scripts and <style> run by nonce only, except ReDoc's own styles (its policy)
    for name in ("login", "docs"):
        for directive in ("script-src" if name == "docs" else "style-src", "style-src"):
            sources = directive_of(pages[name]["policy"], directive)
            assert "'unsafe-inline'" not in sources and "'nonce-" in sources, (name, directive)
    assert directive_of(pages["redoc"]["policy"], "style-src") == "'self' 'unsafe-inline'"
    assert pages["login"]["shown"] == "Lesion Annotator"
    assert pages["locked_out"] == {"shown": "Too many sign-in attempts", "url": "/accounts/login/"}
    assert pages["app"]["shown"]
    assert pages["workspace"]["shown"] == ["axial", "sagittal", "coronal"], pages["workspace"]
    assert pages["docs"]["shown"] > 20  # Swagger UI drew the operations
    assert pages["redoc"]["shown"] > 5  # and ReDoc its sections
    assert pages["admin"]["shown"] == "Django administration"
    assert pages["admin_users"]["shown"] == 3  # mgr, ann, root
