"""Bad input is a 400 naming the field, never a 500, and the same on SQLite and PostgreSQL.

Query parameters are checked like bodies (a number that is not one, or one no column holds, a
null character PostgreSQL refuses), text is held to the model's length before the database
sees it, a lesion class's colour is a hex colour, and the effort API takes recent, bounded
batches. ``test_no_route_answers_5xx_to_hostile_query_parameters`` sends every GET of the
permission matrix hostile values for every query parameter the API reads.
"""

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from annotator.annotation.serializers import MAX_INTERACTIONS, MAX_INTERVALS
from annotator.core.errors import InvalidInput
from annotator.models import ActiveInterval, Interaction, Series, Study
from projects.models import Project
from projects.services import project_update
from tests.projects.test_permission_matrix import ROLES, TABLE, Row, World, send, world

pytestmark = pytest.mark.django_db

__all__ = ["world"]  # the permission matrix's world, shared with this module's sweep

Clients = Callable[[Any], APIClient]


def refused(response: Any, field: str) -> dict[str, Any]:
    """The body of a 400 that names ``field``."""
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    assert field in body, body
    return body


def test_task_list_and_audit_parameters(workspace: dict[str, Any], client_for: Clients) -> None:
    manager = client_for(workspace["manager"])
    tasks = "/api/projects/alpha/tasks/"
    refused(manager.get(tasks, {"round": "abc"}), "round")
    refused(manager.get(tasks, {"round": "9" * 30}), "round")
    refused(manager.get(tasks, {"round": "-1"}), "round")
    refused(manager.get(tasks, {"state": "lost"}), "state")
    refused(manager.get(tasks, {"mine": "perhaps"}), "mine")
    assert manager.get(tasks, {"round": "0", "mine": "0"}).json()["count"] == 1
    assert manager.get(tasks, {"round": "1"}).json()["count"] == 0
    refused(manager.get(tasks, {"page": "abc"}), "page")
    refused(manager.get(tasks, {"page": "9" * 30}), "page")
    assert manager.get(tasks, {"page": "1"}).json()["count"] == 1

    audit = "/api/projects/alpha/audit/"
    refused(manager.get(audit, {"task": "9" * 30}), "task")
    refused(manager.get(audit, {"task": "\u00b2"}), "task")  # a digit to str.isdigit, not to int
    refused(manager.get(audit, {"task": "1.5"}), "task")
    refused(manager.get(audit, {"action": "task.\x00claimed"}), "action")
    refused(manager.get(audit, {"user": "x\x00"}), "user")
    refused(manager.get(audit, {"action": "x" * 41}), "action")
    assert manager.get(audit, {"task": str(workspace["task"].pk)}).status_code == 200

    lesion_free = "/api/masks/1/data/"
    refused(client_for(workspace["annotator"]).get(lesion_free, {"encoding": "zip"}), "encoding")


def test_pacs_parameters_are_checked_before_the_pacs_is_asked(
    workspace: dict[str, Any], client_for: Clients
) -> None:
    manager = client_for(workspace["manager"])
    studies = "/api/projects/alpha/pacs/studies/"
    refused(manager.get(studies, {"PatientID": "p" * 65}), "PatientID")
    refused(manager.get(studies, {"StudyDate": "yesterday"}), "StudyDate")
    refused(manager.get(studies, {"PatientName": "a\x00*"}), "PatientName")
    imports = "/api/projects/alpha/pacs/imports/"
    for uids in (["1.2", "1.2.x"], ["1." + "2" * 64], ["1.2"] * 101, [], "1.2", [None]):
        refused(manager.post(imports, {"study_uids": uids}, format="json"), "study_uids")
    # valid input goes on to the PACS, of which there is none here
    response = manager.post(imports, {"study_uids": ["1.2.3"]}, format="json")
    assert "PACS_DICOMWEB_URL" in response.json()["detail"]


def test_json_bodies_nested_too_deeply_are_bad_input(
    workspace: dict[str, Any], lesion: dict[str, Any], client_for: Clients
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    manager = client_for(workspace["manager"])
    for client, url in (
        (manager, "/api/projects/"),
        (lesion["client"], f"/api/lesions/{lesion['id']}/masks/"),  # a view naming its parsers
    ):
        response = client.post(url, deep, content_type="application/json")
        assert response.status_code == 400, response.content[:200]
        assert "nested too deeply" in response.json()["detail"]


def test_json_bodies_over_the_data_limit_are_json_400s(
    workspace: dict[str, Any], client_for: Clients, settings: Any
) -> None:
    """DRF reads a JSON body through ``request.body``, which Django holds to
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` on its declared length; the API says so in JSON."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    manager = client_for(workspace["manager"])
    body = json.dumps({"description": "d" * 2000})
    response = manager.patch("/api/projects/alpha/", body, content_type="application/json")
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    small = json.dumps({"description": "d" * 900})
    response = manager.patch("/api/projects/alpha/", small, content_type="application/json")
    assert response.status_code == 200, response.content


def test_django_form_limits_are_json_400s(
    workspace: dict[str, Any], client_for: Clients, settings: Any
) -> None:
    """Too many files or fields in one form: Django refuses them; the API says so as it says
    everything else, through a token or the browser's session (whose CSRF check reads the form
    before the view does)."""
    # Django's own count, set below ANNOTATOR_MAX_UPLOAD_FILES (whose refusal comes first
    # otherwise: tests/annotator/test_upload_limits.py).
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 100
    session = Client(enforce_csrf_checks=True)
    session.force_login(workspace["manager"])
    session.cookies["csrftoken"] = "c" * 32  # the check then looks for the form's token
    for client in (client_for(workspace["manager"]), session):
        files = [SimpleUploadedFile(f"slice{i}.dcm", b"x") for i in range(101)]
        response = client.post("/api/projects/alpha/imports/", {"files": files})
        assert response.status_code == 400, response.content[:200]
        assert "DATA_UPLOAD_MAX_NUMBER_FILES" in response.json()["detail"]
        fields = {f"field{i}": "x" for i in range(1001)}
        response = client.post("/api/projects/alpha/volumes/", fields)
        assert response.status_code == 400, response.content[:200]
        assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]


def test_volume_description_is_held_to_the_column(
    workspace: dict[str, Any], client_for: Clients, phantom_file: Path, media_root: Path
) -> None:
    """300 characters: refused before anything is written (PostgreSQL's varchar(200) would
    raise, SQLite would keep all of it). A long file name standing in for a missing
    description is cut to the column instead."""
    manager = client_for(workspace["manager"])
    studies, files = Study.objects.count(), sorted(media_root.rglob("*"))

    def upload(name: str, **fields: str) -> Any:
        data = io.BytesIO(phantom_file.read_bytes())
        data.name = name
        return manager.post(
            "/api/projects/alpha/volumes/", {"file": data, **fields}, format="multipart"
        )

    refused(upload("phantom.nii.gz", description="d" * 300), "description")
    refused(upload("phantom.nii.gz", description="a\x00b"), "description")
    assert Study.objects.count() == studies and sorted(media_root.rglob("*")) == files

    assert upload("phantom.nii.gz", description="d" * 200).status_code == 201
    response = upload("n" * 240 + ".nii.gz")
    assert response.status_code == 201, response.content
    series = Series.objects.get(pk=response.json()["series"])
    assert series.description == ("n" * 240 + ".nii.gz")[:200] == series.study.description


def test_project_text_fields_and_lesion_class_colours(
    workspace: dict[str, Any], client_for: Clients
) -> None:
    manager = client_for(workspace["manager"])
    project = "/api/projects/alpha/"
    for color in ("#000;background:url(https://example.org/x)", "red", "#12345", "#000\nx"):
        classes = [{"name": "tumour", "color": color}]
        body = refused(
            manager.patch(project, {"lesion_classes": classes}, format="json"), "lesion_classes"
        )
        assert "#rgb or #rrggbb" in json.dumps(body)
        new = {"name": "Beta", "slug": "beta", "modality": "CT", "lesion_classes": classes}
        refused(manager.post("/api/projects/", new, format="json"), "lesion_classes")
    assert not Project.objects.filter(slug="beta").exists()
    with pytest.raises(InvalidInput, match="expected #rgb or #rrggbb"):  # callers beside the API
        project_update(
            project=workspace["project"], lesion_classes=[{"name": "t", "color": "#000\n"}]
        )
    good = [
        {"name": "tumour", "color": "#A1b2C3"},
        {"name": "node", "color": "#0f0"},
        {"name": "cyst"},
    ]
    response = manager.patch(project, {"lesion_classes": good}, format="json")
    assert response.status_code == 200, response.content
    assert [c["color"][0] for c in response.json()["lesion_classes"]] == ["#", "#", "#"]

    refused(manager.patch(project, {"description": "x" * 10_001}, format="json"), "description")
    many = [{"name": f"class {i}"} for i in range(101)]
    refused(manager.patch(project, {"lesion_classes": many}, format="json"), "lesion_classes")
    infinite = b'{"window_presets": [{"name": "w", "center": 1e999, "width": 10}]}'
    response = manager.patch(project, infinite, content_type="application/json")
    refused(response, "window_presets")
    refused(
        manager.post(f"/api/tasks/{workspace['task'].pk}/reopen/", {"reason": "r" * 2001}),
        "reason",
    )


def test_effort_batches_are_recent_and_bounded(
    lesion: dict[str, Any], workspace: dict[str, Any]
) -> None:
    client = lesion["client"]
    url = f"/api/tasks/{workspace['task'].pk}/effort/"
    now = datetime.now(UTC).replace(microsecond=0)

    def interval(start: datetime, seconds: float = 30) -> dict[str, str]:
        return {
            "started_at": start.isoformat(),
            "ended_at": (start + timedelta(seconds=seconds)).isoformat(),
        }

    def post(**body: Any) -> Any:
        return client.post(url, body, format="json")

    thousand_years = {"started_at": "1500-01-01T00:00:00Z", "ended_at": "2500-01-01T00:00:00Z"}
    refused(post(intervals=[thousand_years]), "intervals")
    refused(post(intervals=[interval(now - timedelta(days=31))]), "intervals")
    refused(post(intervals=[interval(now + timedelta(hours=2))]), "intervals")
    refused(post(intervals=[interval(now - timedelta(hours=3), seconds=2 * 3600)]), "intervals")
    many = [interval(now - timedelta(hours=2) + timedelta(seconds=i)) for i in range(20_000)]
    body = refused(post(intervals=many), "intervals")
    assert f"no more than {MAX_INTERVALS}" in json.dumps(body)
    clicks = [{"tool": "box", "at": now.isoformat()}] * (MAX_INTERACTIONS + 1)
    refused(post(interactions=clicks), "interactions")
    refused(
        post(interactions=[{"tool": "box", "at": now.isoformat(), "slice_index": 10**30}]),
        "interactions",
    )
    refused(post(interactions=[{"tool": "box", "at": "0001-01-01T00:00:00Z"}]), "interactions")
    assert not ActiveInterval.objects.exists() and not Interaction.objects.exists()

    full = many[:MAX_INTERVALS]
    response = post(intervals=full, interactions=clicks[:MAX_INTERACTIONS])
    assert response.status_code == 201, response.content
    assert ActiveInterval.objects.count() == MAX_INTERVALS
    assert Interaction.objects.count() == MAX_INTERACTIONS


HOSTILE = (
    "abc",
    "9" * 30,
    "-1",
    "1.5",
    "\u00b2",
    "1e999",
    "a\x00b",
    "x" * 5000,
    "%_\\",
    "*a" * 11 + "*b",
)
# Every query parameter a view of the API or of DICOMweb reads.
PARAMETERS = (
    "round",
    "state",
    "mine",
    "task",
    "action",
    "user",
    "page",
    "encoding",
    "formats",
    "limit",
    "offset",
    "includefield",
    "fuzzymatching",
    "PatientName",
    "PatientID",
    "StudyDescription",
    "SeriesDescription",
    "AccessionNumber",
    "StudyDate",
    "SeriesNumber",
    "InstanceNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "Modality",
    "ModalitiesInStudy",
)


def _role_for(row: Row) -> str:
    """The role whose request the row accepts (the most privileged)."""
    accepted = [role for role, code in zip(ROLES, row.expected, strict=True) if code < 300]
    return accepted[-1]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:12]))
def test_no_route_answers_5xx_to_hostile_query_parameters(
    world: World, value: str, settings: Any
) -> None:
    """Every parameter at once with each hostile value, then each parameter alone (a view that
    refuses one parameter first could hide what another does to it) with the values most
    likely to break a view: not a number, a number too large for any column, a null character."""
    location = {"location": str(world.media), "base_url": "/media/"}
    default = {**settings.STORAGES["default"], "OPTIONS": location}
    settings.STORAGES = {**settings.STORAGES, "default": default}
    rows = [row for row in TABLE if row.method == "GET" and not row.pacs]
    assert len(rows) > 30
    queries = ["&".join(f"{key}={_quote(value)}" for key in PARAMETERS)]
    if value in ("abc", "9" * 30, "a\x00b"):
        queries += [f"{key}={_quote(value)}" for key in PARAMETERS]
    for row in rows:
        client = world.client(_role_for(row))
        for query in queries:
            probe = Row(row.name, "GET", f"{row.path}?{query}", row.expected, accept=row.accept)
            response = send(client, probe, world)
            assert response.status_code < 500, (row.id, query[:60], response.status_code)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
