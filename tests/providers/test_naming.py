"""Cloud names cannot collide across namespaces; a recorded name wins; ownership tags cannot be
overridden by a spec (unit tests of :mod:`controller.providers.naming` and both adapters)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.providers.aws.adapter import AwsPoolAdapter
from controller.providers.inmemory.adapter import InMemoryPoolAdapter
from controller.providers.naming import (
    POOL_NAME_TAG,
    POOL_NAMESPACE_TAG,
    group_name,
)

Obj = dict[str, Any]
POOL: Obj = {"metadata": {"namespace": "x", "name": "x"}, "spec": {"clusterName": "prod"}}
#: Launch template names (AWS): 3..128 characters of this set.
_LT_NAME = re.compile(r"^[a-zA-Z0-9().\-/_]{3,128}$")


def _infra(namespace: str, name: str, **status: str) -> Obj:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {}, "status": status}


@pytest.mark.parametrize("adapter", [AwsPoolAdapter(), InMemoryPoolAdapter()], ids=["aws", "sim"])
def test_team_a_prod_and_team_a_dash_prod_get_different_names(adapter: Any) -> None:
    one = adapter.group_name(infra=_infra("team-a", "prod"))
    two = adapter.group_name(infra=_infra("team", "a-prod"))
    assert one != two
    # Readable: both start with what people would look for.
    assert one.startswith("team-a-prod-")
    assert two.startswith("team-a-prod-")


def test_names_fit_every_limit_and_stay_distinct_when_cut() -> None:
    namespace, name = "n" * 63, "p" * 253
    aws = AwsPoolAdapter().group_name(infra=_infra(namespace, name))
    sim = InMemoryPoolAdapter().group_name(infra=_infra(namespace, name))
    assert _LT_NAME.match(aws)
    assert len(aws) == 128
    assert len(sim) == 255
    assert "/" not in sim
    assert sim.isprintable()
    # Two names whose readable prefixes are cut to the same text still differ.
    other = group_name(namespace=namespace, name="p" * 252 + "q", max_length=128)
    assert other[:100] == aws[:100]
    assert other != aws


def test_a_recorded_name_is_kept_whatever_the_scheme_computes() -> None:
    infra = _infra("team-a", "prod", groupName="team-a-prod")  # e.g. an older scheme's name
    assert AwsPoolAdapter().group_name(infra=infra) == "team-a-prod"
    assert InMemoryPoolAdapter().group_name(infra=infra) == "team-a-prod"
    assert AwsPoolAdapter().group_spec(infra=infra, pool=POOL).name == "team-a-prod"


def test_additional_tags_cannot_overwrite_the_ownership_tags() -> None:
    infra = _infra("team-a", "prod")
    infra["spec"]["additionalTags"] = {
        POOL_NAMESPACE_TAG: "team-b",
        POOL_NAME_TAG: "other",
        "sigs.k8s.io/cluster-api-provider-aws/cluster/prod": "shared",
    }
    spec = AwsPoolAdapter().group_spec(infra=infra, pool=POOL)
    assert spec.tags[POOL_NAMESPACE_TAG] == "team-a"
    assert spec.tags[POOL_NAME_TAG] == "prod"
    assert spec.tags["sigs.k8s.io/cluster-api-provider-aws/cluster/prod"] == "owned"
    assert dict(spec.owner_tags).items() <= dict(spec.tags).items()


def test_the_simulated_group_carries_its_ownership_tags() -> None:
    infra = _infra("team-a", "prod")
    infra["spec"]["template"] = {"zones": ["zone-a"]}
    spec = InMemoryPoolAdapter().group_spec(infra=infra, pool=POOL)
    assert spec.owner_tags == {
        POOL_NAMESPACE_TAG: "team-a",
        POOL_NAME_TAG: "prod",
        "machinepool.cluster.x-k8s.io/cluster-name": "prod",
    }
    assert spec.tags == spec.owner_tags
