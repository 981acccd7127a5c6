"""An independent checker for Kubernetes *structural* CRD schemas (test helper).

Written from the apiextensions rules, not from the generator, so the two can disagree:

- every node has a non-empty ``type``, except ``x-kubernetes-int-or-string`` and
  ``x-kubernetes-preserve-unknown-fields`` nodes;
- no ``$ref``/``$defs``/``definitions``, no ``allOf``/``oneOf``/``not``, no ``anyOf`` except the
  exact int-or-string pair, no ``null`` type, no ``uniqueItems``, no ``additionalProperties: false``
  or ``true``, no JSON-Schema-only keywords;
- ``properties`` and ``additionalProperties`` never on the same node; arrays have ``items``;
  ``required`` names only declared properties;
- list types: ``set`` lists hold scalars; ``map`` lists hold objects whose key fields are
  declared and required; ``x-kubernetes-list-map-keys`` only with ``map``;
- CEL rules have a ``rule`` and a ``message``.
"""

from __future__ import annotations

from typing import Any

_ALLOWED = {
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "default",
    "nullable",
    "anyOf",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "x-kubernetes-embedded-resource",
}
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_SCALARS = {"string", "integer", "number", "boolean"}


def structural_violations(schema: dict[str, Any]) -> list[str]:
    """Every rule broken by the root ``openAPIV3Schema`` ``schema``, as ``path: problem``."""
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append("<root>: type must be object")
    meta = schema.get("properties", {}).get("metadata")
    if meta is not None and meta != {"type": "object"}:
        problems.append("<root>.metadata: must be just {type: object}")
    for name in ("apiVersion", "kind"):
        prop = schema.get("properties", {}).get(name)
        if prop is not None and prop.get("type") != "string":
            problems.append(f"<root>.{name}: must be a string")
    _check(schema, "<root>", problems)
    return problems


def _check(node: Any, path: str, problems: list[str]) -> None:
    if not isinstance(node, dict):
        problems.append(f"{path}: not a mapping")
        return
    for key in node:
        if key not in _ALLOWED:
            problems.append(f"{path}: keyword {key!r} not allowed")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    node_type = node.get("type")
    if node_type is None:
        if not (int_or_string or preserve):
            problems.append(f"{path}: no type")
    elif node_type not in _TYPES:
        problems.append(f"{path}: type {node_type!r} not allowed")
    if int_or_string:
        if node_type is not None:
            problems.append(f"{path}: int-or-string with a type")
        any_of = node.get("anyOf")
        if any_of is not None and any_of != [{"type": "integer"}, {"type": "string"}]:
            problems.append(f"{path}: int-or-string anyOf must be [integer, string]")
    elif "anyOf" in node:
        problems.append(f"{path}: anyOf outside int-or-string")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if "additionalProperties" in node and not isinstance(node["additionalProperties"], dict):
        problems.append(f"{path}: additionalProperties must be a schema")
    if (
        node_type == "object"
        and not ("properties" in node or "additionalProperties" in node or preserve)
        and path != "<root>.metadata"  # the API server validates top-level metadata itself
    ):
        problems.append(f"{path}: object with no fields prunes everything")
    if node_type == "array" and "items" not in node:
        problems.append(f"{path}: array without items")
    if node_type != "array" and "items" in node:
        problems.append(f"{path}: items on a non-array")
    declared = set(node.get("properties", {}))
    for name in node.get("required", []):
        if name not in declared:
            problems.append(f"{path}: required {name!r} is not a property")
    _check_list_type(node, path, problems)
    for rule in node.get("x-kubernetes-validations", []):
        if not rule.get("rule") or not rule.get("message"):
            problems.append(f"{path}: CEL rule needs rule and message")
    for name, child in node.get("properties", {}).items():
        _check(child, f"{path}.{name}", problems)
    if "items" in node:
        _check(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _check(node["additionalProperties"], f"{path}{{}}", problems)


def _check_list_type(node: dict[str, Any], path: str, problems: list[str]) -> None:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if list_type is None:
        if keys is not None:
            problems.append(f"{path}: list-map-keys without list-type")
        return
    if node.get("type") != "array":
        problems.append(f"{path}: list-type on a non-array")
        return
    items = node.get("items", {})
    if list_type == "set":
        if items.get("type") not in _SCALARS or keys is not None:
            problems.append(f"{path}: set list must hold scalars and have no map keys")
    elif list_type == "map":
        if items.get("type") != "object" or not keys:
            problems.append(f"{path}: map list needs object items and keys")
            return
        for key in keys:
            if key not in items.get("properties", {}):
                problems.append(f"{path}: map key {key!r} is not a property of the items")
            elif key not in items.get("required", []) and "default" not in items["properties"][key]:
                problems.append(f"{path}: map key {key!r} must be required or defaulted")
    elif list_type == "atomic":
        if keys is not None:
            problems.append(f"{path}: list-map-keys on an atomic list")
    else:
        problems.append(f"{path}: unknown list-type {list_type!r}")
