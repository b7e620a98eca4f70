"""The OpenAPI schema describes what the API really answers.

Every ``/api/`` row of the permission matrix (``tests/projects/test_permission_matrix.py``: a
request that really succeeds, for every endpoint and method) is sent by a role it is for, and
its answer is checked against the schema drf-spectacular generates (the one ``/api/schema/``
serves): the status is one the operation documents, and a JSON body validates against that
status's schema with ``jsonschema``. Objects are closed (``additionalProperties: false`` where
the schema lists properties), so a field the schema does not name fails too.
"""

import json
import re
from functools import cache
from typing import Any, cast

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from jsonschema import Draft4Validator

from tests.projects.test_permission_matrix import (  # noqa: F401 (fixtures used by name)
    ROLES,
    TABLE,
    Row,
    World,
    media_root,
    send,
    world,
)

pytestmark = pytest.mark.django_db


@cache
def openapi() -> dict[str, Any]:
    """The schema ``/api/schema/`` serves, generated here."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return cast(dict[str, Any], json.loads(OpenApiJsonRenderer().render(generated)))


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's schema dialect as JSON Schema (draft 4): ``nullable`` becomes a ``null``
    alternative, and objects with listed properties admit no others."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_json_schema(value) for key, value in node.items()}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def operations(method: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The schema's path templates matching the concrete ``path``, with their ``method``
    operation."""
    return [
        (template, ops[method.lower()])
        for template, ops in openapi()["paths"].items()
        if method.lower() in ops and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path)
    ]


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    found = operations(method, path)
    assert len(found) == 1, f"{method} {path}: {len(found)} operations in the schema match"
    return found[0]


def schema_errors(method: str, path: str, status: int, body: Any) -> list[str]:
    """Why the answer does not fit the schema ([] when it does)."""
    template, op = operation(method, path)
    responses = op["responses"]
    if str(status) not in responses:
        return [f"{method} {template}: status {status} is not in the schema ({sorted(responses)})"]
    content = responses[str(status)].get("content", {})
    if "application/json" not in content:
        return []
    schema = as_json_schema(content["application/json"]["schema"])
    schema["components"] = as_json_schema(openapi()["components"])
    validator = Draft4Validator(schema)
    return [
        f"{method} {template} {status} at {'/'.join(map(str, e.absolute_path)) or 'body'}: "
        f"{e.message[:300]}"
        for e in validator.iter_errors(body)
    ]


def _role_for(row: Row) -> str | None:
    """The most privileged role the row succeeds for (None: none)."""
    for role in reversed(ROLES):
        if 200 <= row.expected[ROLES.index(role)] < 300:
            return role
    return None


# The schema and its two viewers are not operations of the schema.
NOT_IN_SCHEMA = {"/api/schema/", "/api/docs/", "/api/redoc/"}
API_ROWS = [
    pytest.param(row, id=row.id)
    for row in TABLE
    if row.path.startswith("/api/")
    and row.path not in NOT_IN_SCHEMA
    and not row.pacs
    and _role_for(row) is not None
]


def test_every_api_route_of_the_matrix_is_in_the_schema() -> None:
    missing = [
        f"{row.method} {row.path}"
        for row in TABLE
        if row.path.startswith("/api/")
        and row.path not in NOT_IN_SCHEMA
        and not operations(row.method, re.sub(r"\{[^}]+\}", "x", row.path.split("?")[0]))
    ]
    assert missing == []


def test_the_checker_finds_what_the_schema_does_not_say() -> None:
    """A body the volumes upload schema does not describe fails; the right one passes."""
    path = "/api/projects/alpha/volumes/"
    good = {
        "series": 1,
        "volume": 2,
        "task": 3,
        "size": [4, 5, 6],
        "spacing": [1.0, 1.0, 2.5],
        "lesions": [],
        "labels": None,
    }
    assert schema_errors("POST", path, 201, good) == []
    task_like = {"id": 3, "state": "queued"}
    assert schema_errors("POST", path, 201, task_like) != []
    assert schema_errors("POST", path, 201, {**good, "extra": 1}) != []
    assert schema_errors("POST", path, 200, good) != []  # not a documented status


@pytest.mark.parametrize("row", API_ROWS)
def test_every_answer_matches_the_schema(row: Row, world: World) -> None:  # noqa: F811
    role = _role_for(row)
    assert role is not None
    response = send(world.client(role), row, world)
    status = response.status_code
    assert status == row.expected[ROLES.index(role)], (row.id, role)
    path = row.path.format(**world.ids).split("?")[0]
    json_body = not response.streaming and response.get("Content-Type", "").startswith(
        "application/json"
    )
    body = response.json() if json_body else None
    errors = schema_errors(row.method, path, status, body)
    assert errors == [], "\n".join(errors)
