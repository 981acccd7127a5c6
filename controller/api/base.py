"""The base of every API model: lossless parsing and serializing of Kubernetes JSON.

Invariants:

- Unknown fields survive at every level. ``from_dict`` keeps keys no model declares and
  ``to_dict`` writes them back unchanged, so an object written by a newer Cluster API, another
  controller or a person is never trimmed by us.
- ``to_dict`` writes exactly the fields that were given (parsed or passed to the
  constructor, or assigned later) plus any field whose value now differs from its default —
  so ``pool.status.replicas = 3`` on a freshly parsed object is written even though ``status``
  itself was defaulted. It never writes a default nobody set.
- Wire names are camelCase (``providerIDList``); Python attribute names are snake_case.
  ``from_dict`` reads wire names only, so a stray snake_case key in someone else's object is
  kept as an unknown field rather than mistaken for a known one. The constructor accepts both.
- Assignments are validated (``pool.spec.replicas = -1`` raises).

Failure: ``from_dict`` and assignments raise :class:`pydantic.ValidationError` on data the
API server would reject (wrong types, out-of-range values, bad enum values).

Unknown fields' values are not copied by ``from_dict``: they are shared with the input, so hand
the input over rather than keep mutating it. ``to_dict`` always returns fresh containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["ApiModel"]


class ApiModel(BaseModel):
    """Base class of all API models; see the module docstring for the guarantees."""

    model_config = ConfigDict(
        extra="allow",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Parse a JSON-like mapping with wire (camelCase) keys; unknown keys are kept."""
        return cls.model_validate(data, by_alias=True, by_name=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready wire form: given and changed fields only, unknown fields included."""
        _mark_changed_defaults(self)
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _mark_changed_defaults(model: BaseModel) -> None:
    """Record as set every defaulted field whose value was changed after construction.

    Pydantic's ``exclude_unset`` looks only at the fields given at construction or
    assigned; a defaulted nested model or list that was mutated in place would be dropped.
    """
    fields_set = model.model_fields_set
    for name, info in type(model).model_fields.items():
        value = model.__dict__.get(name)
        _visit(value)
        if name in fields_set or info.is_required():
            continue
        if value != info.get_default(call_default_factory=True, validated_data={}):
            fields_set.add(name)


def _visit(value: Any) -> None:
    if isinstance(value, BaseModel):
        _mark_changed_defaults(value)
    elif isinstance(value, list):
        # Lists are homogeneous; skip long lists of scalars (providerIDList) cheaply.
        if value and isinstance(value[0], BaseModel):
            for item in value:
                _visit(item)
    elif isinstance(value, dict):
        for item in value.values():
            if isinstance(item, BaseModel):
                _visit(item)
