"""The site around the API: schema, docs, login, the front end page, migrations in sync."""

import io
import re
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client


@pytest.mark.django_db
def test_openapi_schema_describes_the_api() -> None:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in [
        "/api/projects/",
        "/api/projects/{slug}/tasks/next/",
        "/api/lesions/{id}/segment/",
        "/api/lesions/{id}/masks/",
        "/api/tasks/{id}/review/",
        "/api/jobs/{id}/",
    ]:
        assert path in schema["paths"], path
    assert Client().get("/api/docs/").status_code == 200
    # drf-spectacular's own validation, warnings included (an unnamed enum, an untyped field...)
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


@pytest.mark.django_db
def test_every_model_change_has_a_migration() -> None:
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_the_app_page_needs_a_login_and_serves_the_built_front_end(make_user: Any) -> None:
    client = Client()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "Sign in" in client.get("/accounts/login/").content.decode()
    make_user("someone")
    response = client.post("/accounts/login/", {"username": "someone", "password": "pw-someone"})
    assert response.status_code == 302
    page = client.get("/")
    assert (settings.FRONTEND_DIST / "index.html").is_file(), "build frontend/ first (make test)"
    assert page.status_code == 200
    assert b'src="/static/assets/' in page.content
    assert "csrftoken" in page.cookies
    # the page names its hashed build files: those are cached for ever, the page itself is not
    assert "immutable" not in page.get("Cache-Control", "")
    script = re.search(rb'src="(/static/assets/[^"]+\.js)"', page.content)
    assert script is not None
    asset = client.get(script.group(1).decode())
    assert asset.status_code == 200
    assert asset["Cache-Control"] == "max-age=315360000, public, immutable"


@pytest.mark.django_db
def test_demo_seed_is_idempotent() -> None:
    from annotator.models import Volume
    from projects.models import Project, Task

    call_command("seed_demo", "--volumes", "1", stdout=io.StringIO())
    call_command("seed_demo", "--volumes", "1", stdout=io.StringIO())
    project = Project.objects.get(slug="demo-ct-lesions")
    assert project.memberships.count() == 3
    assert Volume.objects.filter(series__study__project=project).count() == 1
    assert Task.objects.filter(round__project=project, state="unassigned").count() == 1
