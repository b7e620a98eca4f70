"""What the OpenAPI schema says beyond what drf-spectacular infers.

drf-spectacular derives ``required`` from a serializer field's ``required`` flag, which speaks of
requests: a model field with a default is optional to send, so the response component lists it
as optional too, though every answer carries it (tfranzel/drf-spectacular#810, #1299). With
``COMPONENT_SPLIT_REQUEST`` the response components are the ones not named ``...Request``; this
hook marks their every property required, so clients generated from the schema (the front
end's ``src/api/schema.d.ts``) need not test for fields that are always there.
``tests/test_api_schema.py`` checks every endpoint's real answer against the schema, ``required``
included.
"""

from typing import Any

# Answers that leave a property out on purpose: component -> properties that may be absent.
MAY_BE_ABSENT: dict[str, set[str]] = {
    "PreannotationProgress": {"started"},  # only in the answer to a start
}


def responses_carry_every_field(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        if name.endswith("Request") or schema.get("type") != "object":
            continue
        properties = schema.get("properties")
        if not properties:
            continue
        absent = MAY_BE_ABSENT.get(name, set())
        schema["required"] = [key for key in properties if key not in absent]
    return result
