"""Every operation of the OpenAPI schema, fuzzed by schemathesis: no answer is a 5xx.

Schemathesis reads ``/api/schema/`` and sends each operation requests built from it (valid and
invalid bodies, query parameters and files), through the WSGI application on the test database.
Path parameters name real objects (the workspace's project, round, task, lesion and mask), so
the requests reach the views' validation rather than a 404, and each operation is sent by the
role that may call it. The examples per operation are few (``FUZZ_EXAMPLES``, default 12): the
whole run stays well under two minutes; raise it to search harder.
"""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from knox.models import AuthToken

from annotator.models import MaskVersion
from annotator.wsgi import application

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
# These end the session the run authenticates with; tests/test_auth.py covers them.
SKIP = ("/api/auth/logout/", "/api/auth/logoutall/")
# The annotator's own actions; everything else is asked by the manager.
ANNOTATOR_PATHS = ("/api/tasks/{id}/lesions/", "/api/tasks/{id}/effort/", "/api/lesions/")


def _openapi() -> dict[str, Any]:
    """The schema ``/api/schema/`` serves, generated here (no request: this runs at import)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return cast(dict[str, Any], json.loads(OpenApiJsonRenderer().render(generated)))


schema = schemathesis.openapi.from_dict(_openapi())
schema.app = application  # requests go through the WSGI application, in this process


@contextmanager
def connection_kept() -> Iterator[None]:
    """Django closes the database connection when a request ends; the test's connection holds
    the test's transaction, so (as Django's test client does) not while a request runs."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(lesion: dict[str, Any], workspace: dict[str, Any]) -> dict[str, Any]:
    """The workspace with its task claimed, a lesion and a saved mask; a token per role."""
    lesion["client"].post(
        f"/api/lesions/{lesion['id']}/masks/",
        {"parent": "", "encoding": "raw-gzip", "mask": _blank_mask(lesion["shape"])},
        format="multipart",
    )
    roles = ("manager", "annotator")
    masks = MaskVersion.objects.filter(lesion_id=lesion["id"])
    world = {
        "tokens": {role: AuthToken.objects.create(user=workspace[role])[1] for role in roles},
        "slug": workspace["project"].slug,
        "task": workspace["task"].pk,
        "lesion": lesion["id"],
        "mask": masks.values_list("pk", flat=True).first(),
    }
    return world


def _blank_mask(shape: tuple[int, int, int]) -> Any:
    import gzip
    import io

    data = io.BytesIO(gzip.compress(bytes(shape[0] * shape[1] * shape[2])))
    data.name = "mask.raw.gz"
    return data


def _real_ids(case: Any, world: dict[str, Any]) -> None:
    """Point the generated path at the world's objects (the rest of the request stays fuzzed)."""
    path = case.operation.path
    params = dict(case.path_parameters or {})
    if "slug" in params:
        params["slug"] = world["slug"]
    if "number" in params:
        params["number"] = 0
    if "id" in params:
        for prefix, key in (
            ("/api/tasks/", "task"),
            ("/api/lesions/", "lesion"),
            ("/api/masks/", "mask"),
        ):
            if path.startswith(prefix):
                params["id"] = world[key]
    case.path_parameters = params


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@pytest.mark.django_db
def test_no_operation_answers_5xx(case: Any, fuzz_world: dict[str, Any]) -> None:
    if case.operation.path in SKIP:
        return
    _real_ids(case, fuzz_world)
    role = "annotator" if case.operation.path.startswith(ANNOTATOR_PATHS) else "manager"
    with connection_kept():
        response = case.call(headers={"Authorization": f"Token {fuzz_world['tokens'][role]}"})
    assert response.status_code < 500, (
        f"{case.operation.method.upper()} {case.formatted_path} {case.query} {case.body!r:.300}"
        f" -> {response.status_code}: {response.text[:500]}"
    )
