"""Property tests: every valid MachinePool round-trips unchanged and is valid for the CRD."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.api import MACHINE_POOL, MachinePool
from controller.api.crdgen import generate_crds
from tests.api.schema_validate import schema_errors
from tests.api.strategies import json_values, machine_pools, unknown_keys

_SCHEMA: dict[str, Any] = next(
    c for c in generate_crds() if c["metadata"]["name"] == MACHINE_POOL.crd_name
)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(machine_pools())
def test_valid_machine_pools_round_trip_unchanged(data: dict[str, Any]) -> None:
    assert schema_errors(data, schema=_SCHEMA) == []  # the strategy makes what the CRD accepts
    original = copy.deepcopy(data)
    pool = MachinePool.from_dict(data)
    assert pool.to_dict() == original
    assert MachinePool.from_dict(pool.to_dict()).to_dict() == original


@_SETTINGS
@given(machine_pools())
def test_what_the_models_write_is_valid_for_the_crd(data: dict[str, Any]) -> None:
    assert schema_errors(MachinePool.from_dict(data).to_dict(), schema=_SCHEMA) == []


@st.composite
def _with_unknown_fields(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(machine_pools())
    holders = [
        data,
        data["metadata"],
        data["spec"],
        data["spec"]["template"]["spec"],
        data["spec"]["template"]["spec"]["infrastructureRef"],
        data["spec"]["template"]["spec"]["bootstrap"],
    ]
    for holder in draw(st.lists(st.sampled_from(holders), min_size=1, max_size=4)):
        holder[draw(unknown_keys)] = draw(json_values)
    return data


@_SETTINGS
@given(_with_unknown_fields())
def test_unknown_fields_anywhere_round_trip_unchanged(data: dict[str, Any]) -> None:
    original = copy.deepcopy(data)
    assert MachinePool.from_dict(data).to_dict() == original
