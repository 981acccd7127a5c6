"""A small validator of objects against a generated CRD schema (test helper).

It covers what our schemas use — types, int-or-string, preserve-unknown, properties (unknown
fields count as errors, since the API server would prune them), required, enum, numeric and
length limits, patterns, item counts, set and map list uniqueness — and ignores CEL rules.
Good enough to show that objects the models accept are objects the CRD accepts.
"""

from __future__ import annotations

import re
from typing import Any


def schema_errors(value: Any, *, schema: dict[str, Any]) -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: problem``."""
    errors: list[str] = []
    _validate(value, schema, "<root>", errors)
    return errors


def _validate(value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            errors.append(f"{path}: not an int or string")
            return
    else:
        expected = schema.get("type")
        if expected is not None and not _has_type(value, expected):
            errors.append(f"{path}: {value!r} is not {expected}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: above maximum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than minLength")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than maxLength")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        _validate_list(value, schema, path, errors)
    if isinstance(value, dict):
        _validate_object(value, schema, path, errors)


def _validate_list(value: list[Any], schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than minItems")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than maxItems")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" and len({repr(v) for v in value}) != len(value):
        errors.append(f"{path}: duplicate set entries")
    if list_type == "map":
        keys = schema["x-kubernetes-list-map-keys"]
        seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
        if len(set(seen)) != len(seen):
            errors.append(f"{path}: duplicate map keys")
    for index, item in enumerate(value):
        _validate(item, schema.get("items", {}), f"{path}[{index}]", errors)


def _validate_object(
    value: dict[str, Any], schema: dict[str, Any], path: str, errors: list[str]
) -> None:
    for name in schema.get("required", []):
        if name not in value:
            errors.append(f"{path}: missing required {name!r}")
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if properties is not None and key in properties:
            _validate(item, properties[key], f"{path}.{key}", errors)
        elif isinstance(additional, dict):
            _validate(item, additional, f"{path}.{key}", errors)
        elif not schema.get("x-kubernetes-preserve-unknown-fields") and properties is not None:
            errors.append(f"{path}: unknown field {key!r} would be pruned")


def _has_type(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False
