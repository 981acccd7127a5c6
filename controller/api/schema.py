"""Field types and markers that carry a model field's Kubernetes schema.

The API models are the one source of truth for the CRDs. What pydantic cannot say on its own
(integer widths, int-or-string, preserved subtrees, list semantics, CEL rules, schema
defaults) is said here, as JSON-schema annotations that :mod:`controller.api.structural`
turns into OpenAPI v3 for ``apiextensions.k8s.io/v1``.

Invariants:

- ``Int32``/``Int64`` accept only real ints (no bools, floats or numeric strings) within the
  width; ``Bool`` accepts only real bools. Python-side parsing is never looser than the API
  server, so a value that parses also round-trips unchanged.
- ``Time`` parses RFC 3339 and always serializes as UTC ``YYYY-MM-DDTHH:MM:SSZ`` (with
  microseconds only when there are any), which is what the API server writes.
- ``IntOrString`` keeps the value's type: ``3`` stays an int, ``"30%"`` stays a string.
- A schema default given through :func:`crd` goes into the CRD only; in Python the field keeps
  its own default (usually ``None``) so that serializing never writes a default nobody set.

Failure: a marker used wrongly (map keys without ``list_type="map"``) raises ``ValueError``
when the model module is imported, so it cannot ship.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, GetJsonSchemaHandler, PlainSerializer, Strict
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "CONDITION_REASON_PATTERN",
    "CONDITION_TYPE_PATTERN",
    "DNS1123_LABEL_PATTERN",
    "DNS1123_SUBDOMAIN_PATTERN",
    "INT32_RANGE",
    "INT64_RANGE",
    "KIND_PATTERN",
    "SCHEMA_DEFAULT_KEY",
    "Bool",
    "Int32",
    "Int64",
    "IntOrString",
    "PreservedObject",
    "Rule",
    "SchemaExtra",
    "Time",
    "crd",
    "format_time",
]

#: Key under which :func:`crd` stores a schema-only default; the generator renames it.
SCHEMA_DEFAULT_KEY: Final = "x-crdgen-default"

DNS1123_SUBDOMAIN_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DNS1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
KIND_PATTERN: Final = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

#: Value ranges of the integer formats; bounds equal to these are implied by the format, so
#: the generator leaves them out of the CRD.
INT32_RANGE: Final = (-(2**31), 2**31 - 1)
INT64_RANGE: Final = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: values hold dicts
class SchemaExtra:
    """Annotated metadata: add ``values`` to the JSON schema pydantic derives for the type.

    Use it for reusable type aliases, e.g. ``Annotated[list[str], SchemaExtra(crd(...))]``.
    Unlike ``Field(json_schema_extra=...)``, which pydantic honours only on the field itself,
    it survives inside ``X | None`` and other nested annotations.
    """

    values: Mapping[str, Any]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.values)
        return schema


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: values hold dicts
class _SchemaReplace:
    """Annotated metadata: use ``values`` as the type's JSON schema, whatever pydantic says."""

    values: Mapping[str, Any]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.values)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """Format ``value`` as Kubernetes does: RFC 3339 in UTC with a ``Z`` suffix."""
    value = _as_utc(value)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


Int32 = Annotated[
    int,
    Strict(),
    Field(ge=INT32_RANGE[0], le=INT32_RANGE[1]),
    SchemaExtra({"format": "int32"}),
]
"""A 32-bit integer (``type: integer, format: int32``)."""

Int64 = Annotated[
    int,
    Strict(),
    Field(ge=INT64_RANGE[0], le=INT64_RANGE[1]),
    SchemaExtra({"format": "int64"}),
]
"""A 64-bit integer (``type: integer, format: int64``)."""

NonNegativeInt32 = Annotated[Int32, Field(ge=0)]
"""A 32-bit integer of at least 0 (a count, a size, seconds)."""

Bool = Annotated[bool, Strict()]
"""A boolean that must be a real ``true``/``false`` on the wire."""

Time = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_time, return_type=str),
    SchemaExtra({"type": "string", "format": "date-time"}),
]
"""A ``metav1.Time``: an aware UTC datetime in Python, RFC 3339 on the wire."""

IntOrString = Annotated[
    Annotated[int, Strict()] | Annotated[str, Strict()],
    _SchemaReplace(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
        }
    ),
]
"""An ``intstr.IntOrString`` (``x-kubernetes-int-or-string``), e.g. ``1`` or ``"25%"``."""

PreservedObject = Annotated[
    dict[str, Any],
    _SchemaReplace({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A JSON object kept as it is, no schema below it (``x-kubernetes-preserve-unknown-fields``)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One CEL validation rule (an entry of ``x-kubernetes-validations``).

    Mind the CEL cost budget: every string and list the rule reads needs a ``maxLength`` /
    ``maxItems`` in the schema, or the API server rejects the CRD.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"] | None = None

    def to_schema(self) -> JsonDict:
        """The rule as it appears in the CRD."""
        out: JsonDict = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class _Unset:
    """Sentinel type for "no schema default"."""


_UNSET: Final = _Unset()


def crd(
    *,
    default: Any = _UNSET,
    list_type: Literal["atomic", "set", "map"] | None = None,
    list_map_keys: Sequence[str] = (),
    map_type: Literal["atomic", "granular"] | None = None,
    rules: Sequence[Rule] = (),
    preserve_unknown_fields: bool = False,
) -> JsonDict:
    """Kubernetes schema extensions for a field or model, for ``json_schema_extra``.

    Use on a field as ``Field(..., json_schema_extra=crd(list_type="atomic"))``, on a model as
    ``model_config = ConfigDict(json_schema_extra=crd(rules=[...]))``, or in a reusable type
    alias as ``Annotated[T, SchemaExtra(crd(...))]``.

    ``default`` is the schema default the API server applies; it does not change the
    Python default. Raises ``ValueError`` for inconsistent arguments.
    """
    if list_map_keys and list_type != "map":
        raise ValueError("list_map_keys needs list_type='map'")
    if list_type == "map" and not list_map_keys:
        raise ValueError("list_type='map' needs list_map_keys")
    out: JsonDict = {}
    if not isinstance(default, _Unset):
        out[SCHEMA_DEFAULT_KEY] = default
    if list_type is not None:
        out["x-kubernetes-list-type"] = list_type
    if list_map_keys:
        out["x-kubernetes-list-map-keys"] = list(list_map_keys)
    if map_type is not None:
        out["x-kubernetes-map-type"] = map_type
    if rules:
        out["x-kubernetes-validations"] = [r.to_schema() for r in rules]
    if preserve_unknown_fields:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out
