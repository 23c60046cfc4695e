"""Validation of Freight's objects against the published OpenAI OpenAPI subset.

The shared spec says a null where the schema says string means the key may be absent,
so every optional (not `required`) property also admits null here; required
properties keep their exact types.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

# A copy of shared/spec/openai-openapi-batch.json (the published OpenAPI subset).
SPEC = Path(__file__).resolve().parent / "data" / "openai-openapi-batch.json"


def _optional_nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _optional_nullable(v) for k, v in node.items()}
        props = node.get("properties")
        if isinstance(props, dict):
            required = set(node.get("required", []))
            node["properties"] = {
                name: schema if name in required else {"anyOf": [schema, {"type": "null"}]}
                for name, schema in props.items()
            }
        return node
    if isinstance(node, list):
        return [_optional_nullable(v) for v in node]
    return node


@functools.cache
def _document() -> dict[str, Any]:
    return _optional_nullable(json.loads(SPEC.read_text()))


def assert_matches(schema_name: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError if `instance` does not match the named schema."""
    root = copy.copy(_document())
    root["$ref"] = f"#/components/schemas/{schema_name}"
    Draft202012Validator(root).validate(instance)
