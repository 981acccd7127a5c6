"""Turn a pydantic model's JSON schema into a structural OpenAPI v3 schema for a CRD.

Pydantic emits JSON Schema 2020-12 with ``$ref``/``$defs``, ``anyOf: [X, null]`` for optional
fields, titles, Python defaults and ``additionalProperties: true`` for models that allow extra
keys. ``apiextensions.k8s.io/v1`` needs a *structural* schema instead: every node self-contained
and typed, no references, no nullable unions, and ``properties`` never mixed with
``additionalProperties``.

Rules applied, in order, to every node:

- ``$ref``, a one-element ``allOf`` and ``anyOf: [X, {type: null}]`` are replaced by ``X``
  merged with the node's own keys (the node's keys win; ``x-kubernetes-validations`` of both
  are concatenated);
- ``title`` and pydantic's ``default`` are dropped; a schema default declared with
  :func:`controller.api.schema.crd` becomes ``default``; ``const`` becomes a one-value ``enum``;
- ``additionalProperties: true`` (from ``extra="allow"``) is dropped: unknown fields are kept in
  Python, while the API server prunes them unless the model asks for
  ``x-kubernetes-preserve-unknown-fields``;
- ``minimum``/``maximum`` equal to the full range of an ``int32``/``int64`` format are
  dropped (the format implies them);
- ``required`` is sorted, so output is deterministic.

Failure: anything else that cannot be said in a CRD (a key outside the allowed set, a
union other than int-or-string, an untyped node, ``dict[str, Any]`` without
:data:`~controller.api.schema.PreservedObject`) raises :class:`StructuralSchemaError` naming the
path of the offending field, so a model that cannot become a CRD fails at generation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from controller.api.schema import INT32_RANGE, INT64_RANGE, SCHEMA_DEFAULT_KEY

__all__ = ["StructuralSchemaError", "structural_schema"]

_VALUE_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
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
    }
)
_EXTENSION_KEYS = frozenset(
    {
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
        "x-kubernetes-embedded-resource",
    }
)
_DROPPED_KEYS = frozenset({"title", "default"})
_INT_OR_STRING_BRANCHES = [{"type": "integer"}, {"type": "string"}]
_NULL = {"type": "null"}
_FORMAT_RANGES = {"int32": INT32_RANGE, "int64": INT64_RANGE}


class StructuralSchemaError(ValueError):
    """A model's schema cannot be expressed as a structural CRD schema."""


def structural_schema(
    model: type[BaseModel], *, replace: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model``.

    ``replace`` maps top-level property names to schemas used as they are (for example
    ``{"metadata": {"type": "object"}}``, which the API server requires for top-level metadata).
    Raises :class:`StructuralSchemaError` as described in the module docstring.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.pop("$defs", {})
    converter = _Converter(defs)
    replace = replace or {}
    node = converter.resolve(raw, path=model.__name__)
    properties = node.get("properties", {})
    for name in replace:
        if name not in properties:
            raise StructuralSchemaError(f"{model.__name__}: no property {name!r} to replace")
    node["properties"] = {
        name: dict(replace[name]) if name in replace else child
        for name, child in properties.items()
    }
    return converter.convert(node, path=model.__name__, resolved=True)


class _Converter:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self._defs = defs

    def resolve(self, node: Mapping[str, Any], *, path: str) -> dict[str, Any]:
        """Inline references and strip null branches until the node stands on its own."""
        current = dict(node)
        while True:
            if "$ref" in current:
                ref = current.pop("$ref")
                name = ref.removeprefix("#/$defs/")
                if name not in self._defs:
                    raise StructuralSchemaError(f"{path}: unresolvable reference {ref!r}")
                current = _merge(self._defs[name], override=current)
            elif "allOf" in current:
                parts = current.pop("allOf")
                if len(parts) != 1:
                    raise StructuralSchemaError(f"{path}: allOf with {len(parts)} parts")
                current = _merge(parts[0], override=current)
            elif "anyOf" in current and _NULL in current["anyOf"]:
                options = [o for o in current.pop("anyOf") if o != _NULL]
                if len(options) != 1:
                    raise StructuralSchemaError(
                        f"{path}: unions other than int-or-string ({len(options)} types)"
                    )
                current = _merge(options[0], override=current)
            else:
                return current

    def convert(
        self, node: Mapping[str, Any], *, path: str, resolved: bool = False
    ) -> dict[str, Any]:
        node = dict(node) if resolved else self.resolve(node, path=path)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED_KEYS:
                continue
            if key == SCHEMA_DEFAULT_KEY:
                out["default"] = value
            elif key == "const":
                out["enum"] = [value]
            elif key == "properties":
                out["properties"] = {
                    name: self.convert(child, path=f"{path}.{name}")
                    for name, child in value.items()
                }
            elif key == "items":
                out["items"] = self.convert(value, path=f"{path}[]")
            elif key == "additionalProperties":
                if isinstance(value, Mapping):
                    out["additionalProperties"] = self.convert(value, path=f"{path}{{}}")
                elif (value is not True or "properties" not in node) and not node.get(
                    "x-kubernetes-preserve-unknown-fields"
                ):
                    raise StructuralSchemaError(
                        f"{path}: free-form object; use PreservedObject or a model"
                    )
            elif key == "required":
                out["required"] = sorted(value)
            elif key == "anyOf":
                if not node.get("x-kubernetes-int-or-string") or value != _INT_OR_STRING_BRANCHES:
                    raise StructuralSchemaError(f"{path}: unions other than int-or-string (anyOf)")
                out["anyOf"] = [dict(branch) for branch in value]
            elif key in _VALUE_KEYS or key in _EXTENSION_KEYS:
                out[key] = value
            else:
                raise StructuralSchemaError(f"{path}: {key!r} cannot be expressed in a CRD schema")
        low, high = _FORMAT_RANGES.get(out.get("format", ""), (None, None))
        if low is not None and out.get("minimum") == low:
            del out["minimum"]
        if high is not None and out.get("maximum") == high:
            del out["maximum"]
        if (
            "type" not in out
            and not out.get("x-kubernetes-int-or-string")
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            raise StructuralSchemaError(f"{path}: no type")
        if "properties" in out and "additionalProperties" in out:
            raise StructuralSchemaError(f"{path}: both properties and additionalProperties")
        missing = set(out.get("required", ())) - set(out.get("properties", {}))
        if missing:
            raise StructuralSchemaError(f"{path}: required but not defined: {sorted(missing)}")
        return out


def _merge(base: Mapping[str, Any], *, override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``; CEL rules of both are kept, base's first."""
    merged = {**base, **override}
    rules = [
        *base.get("x-kubernetes-validations", ()),
        *override.get("x-kubernetes-validations", ()),
    ]
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged
