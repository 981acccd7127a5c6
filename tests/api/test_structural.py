"""The pydantic-to-structural conversion, on small models, and the checker the CRD tests rely on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import ConfigDict, Field

from controller.api.base import ApiModel
from controller.api.schema import (
    Int32,
    Int64,
    IntOrString,
    PreservedObject,
    Rule,
    SchemaExtra,
    Time,
    crd,
)
from controller.api.structural import StructuralSchemaError, structural_schema
from tests.api.structural_check import structural_violations

RuledName = Annotated[str, Field(max_length=10), SchemaExtra(crd(rules=[Rule("self != ''", "m")]))]


class Leaf(ApiModel):
    """A leaf."""

    model_config = ConfigDict(json_schema_extra=crd(rules=[Rule("has(self.count)", "count")]))

    count: Int32 | None = None
    """How many."""


class Root(ApiModel):
    """The root."""

    required_leaf: Leaf
    optional_leaf: Leaf | None = Field(
        default=None, json_schema_extra=crd(rules=[Rule("true", "field rule")])
    )
    """An optional leaf."""
    leaves: list[Leaf] = Field(default_factory=list)
    big: Int64 | None = None
    when: Time | None = None
    flag: Literal["A", "B"] | None = Field(default=None, json_schema_extra=crd(default="A"))
    only: Literal["X"] = "X"
    labels: dict[str, str] = Field(default_factory=dict)
    blob: PreservedObject | None = None
    amount: IntOrString | None = None
    ruled: RuledName | None = None


def test_conversion_inlines_refs_drops_nulls_titles_and_python_defaults() -> None:
    schema = structural_schema(Root)

    assert structural_violations(schema) == []
    assert schema["required"] == ["requiredLeaf"]
    assert "title" not in str(schema)
    leaf = schema["properties"]["requiredLeaf"]
    assert leaf == {
        "description": "A leaf.",
        "type": "object",
        "properties": {"count": {"description": "How many.", "type": "integer", "format": "int32"}},
        "x-kubernetes-validations": [{"rule": "has(self.count)", "message": "count"}],
    }
    optional = schema["properties"]["optionalLeaf"]
    assert optional["description"] == "An optional leaf."  # the field's, not the class's
    assert [r["message"] for r in optional["x-kubernetes-validations"]] == ["count", "field rule"]
    assert schema["properties"]["leaves"]["items"]["type"] == "object"
    assert schema["properties"]["big"] == {"type": "integer", "format": "int64"}
    assert schema["properties"]["when"] == {"type": "string", "format": "date-time"}
    assert schema["properties"]["flag"] == {"type": "string", "enum": ["A", "B"], "default": "A"}
    assert schema["properties"]["only"] == {"type": "string", "enum": ["X"]}
    assert schema["properties"]["labels"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }
    assert schema["properties"]["blob"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert schema["properties"]["amount"] == {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    assert schema["properties"]["ruled"]["x-kubernetes-validations"] == [
        {"rule": "self != ''", "message": "m"}
    ]
    assert schema["properties"]["ruled"]["maxLength"] == 10


def test_replace_swaps_a_top_level_property() -> None:
    schema = structural_schema(Root, replace={"blob": {"type": "object"}})
    assert schema["properties"]["blob"] == {"type": "object"}
    with pytest.raises(StructuralSchemaError, match="no property 'nope'"):
        structural_schema(Root, replace={"nope": {"type": "object"}})


class FreeForm(ApiModel):
    data: dict[str, Any] = Field(default_factory=dict)


class Union(ApiModel):
    value: int | str | None = None


class Exclusive(ApiModel):
    value: Annotated[int, Field(gt=0)] | None = None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (FreeForm, "FreeForm.data: free-form object"),
        (Union, "Union.value: unions other than int-or-string"),
        (Exclusive, "Exclusive.value: 'exclusiveMinimum' cannot be expressed"),
    ],
)
def test_what_a_crd_cannot_say_fails_at_generation_naming_the_field(
    model: type[ApiModel], message: str
) -> None:
    with pytest.raises(StructuralSchemaError, match=message):
        structural_schema(model)


def test_crd_marker_rejects_inconsistent_list_settings() -> None:
    with pytest.raises(ValueError, match="list_type='map'"):
        crd(list_map_keys=["type"])
    with pytest.raises(ValueError, match="needs list_map_keys"):
        crd(list_type="map")


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {}}}, "<root>.a: no type"),
        ({"type": "object", "properties": {"a": {"$ref": "#/x"}}}, "keyword '$ref'"),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            },
            "anyOf outside int-or-string",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "object", "properties": {}, "additionalProperties": {}}
                },
            },
            "properties and additionalProperties together",
        ),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "array without items"),
        ({"type": "object", "required": ["a"], "properties": {}}, "required 'a' is not a property"),
        (
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["k"],
                    }
                },
            },
            "map key 'k' must be required",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "uniqueItems": True}}},
            "keyword 'uniqueItems'",
        ),
        (
            {"type": "object", "properties": {"metadata": {"type": "object", "properties": {}}}},
            "metadata: must be just",
        ),
    ],
)
def test_checker_catches_non_structural_schemas(schema: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in structural_violations(schema)), structural_violations(schema)
