"""Hypothesis strategies for valid MachinePool objects in wire form (test helper).

"Valid" means: what the CRD schema accepts (checked by the property test itself), with
times at second precision in ``Z`` form, as the API server writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

_Json = dict[str, Any]

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
_DIGITS = "0123456789"

# Built from alphabets rather than st.from_regex, which is slow to draw from.
dns_labels = st.lists(
    st.text(_LOWER + _DIGITS, min_size=1, max_size=5), min_size=1, max_size=3
).map("-".join)
dns_subdomains = st.lists(dns_labels, min_size=1, max_size=3).map(".".join)
kinds = st.builds(
    str.__add__, st.sampled_from(_UPPER), st.text(_LOWER + _UPPER + _DIGITS, max_size=12)
)
reasons = st.builds(
    str.__add__, st.sampled_from(_UPPER), st.text(_LOWER + _UPPER + _DIGITS + "_", max_size=12)
)
short_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
int32s = st.integers(min_value=0, max_value=2**31 - 1)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"))
provider_ids = st.builds(
    lambda zone, n: f"inmemory:///{zone}/i-{n:06x}", dns_labels, st.integers(0, 2**24)
)
label_maps = st.dictionaries(dns_subdomains, short_text, max_size=3)


def _optional(draw: st.DrawFn, *, out: _Json, key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        out[key] = draw(strategy)


def refs() -> st.SearchStrategy[_Json]:
    return st.fixed_dictionaries(
        {"apiGroup": dns_subdomains, "kind": kinds, "name": dns_subdomains}
    )


@st.composite
def conditions(draw: st.DrawFn) -> list[_Json]:
    types = draw(st.lists(kinds, unique=True, max_size=4))
    out = []
    for type_ in types:
        condition = {
            "type": type_,
            "status": draw(st.sampled_from(["True", "False", "Unknown"])),
            "reason": draw(reasons),
            "message": draw(short_text),
            "lastTransitionTime": draw(times),
        }
        _optional(draw, out=condition, key="observedGeneration", strategy=st.integers(0, 2**40))
        out.append(condition)
    return out


@st.composite
def machine_specs(draw: st.DrawFn, *, cluster_name: str) -> _Json:
    bootstrap = draw(
        st.one_of(
            st.fixed_dictionaries({"dataSecretName": dns_subdomains}),
            st.fixed_dictionaries({"configRef": refs()}),
        )
    )
    spec: _Json = {
        "clusterName": cluster_name,
        "bootstrap": bootstrap,
        "infrastructureRef": draw(refs()),
    }
    _optional(
        draw,
        out=spec,
        key="version",
        strategy=st.builds("v1.{}.{}".format, st.integers(0, 99), st.integers(0, 99)),
    )
    _optional(draw, out=spec, key="failureDomain", strategy=dns_labels)
    _optional(draw, out=spec, key="minReadySeconds", strategy=int32s)
    deletion: _Json = {}
    _optional(draw, out=deletion, key="nodeDrainTimeoutSeconds", strategy=int32s)
    _optional(draw, out=deletion, key="nodeDeletionTimeoutSeconds", strategy=int32s)
    if deletion:
        spec["deletion"] = deletion
    if draw(st.booleans()):
        gates = draw(st.lists(kinds, min_size=1, max_size=3, unique=True))
        spec["readinessGates"] = [
            {"conditionType": g, "polarity": draw(st.sampled_from(["Positive", "Negative"]))}
            for g in gates
        ]
    return spec


@st.composite
def machine_pool_statuses(draw: st.DrawFn) -> _Json:
    status: _Json = {}
    _optional(draw, out=status, key="conditions", strategy=conditions())
    initialization: _Json = {}
    _optional(draw, out=initialization, key="infrastructureProvisioned", strategy=st.booleans())
    _optional(draw, out=initialization, key="bootstrapDataSecretCreated", strategy=st.booleans())
    if initialization:
        status["initialization"] = initialization
    for key in ("replicas", "readyReplicas", "availableReplicas", "upToDateReplicas"):
        _optional(draw, out=status, key=key, strategy=int32s)
    _optional(
        draw,
        out=status,
        key="nodeRefs",
        strategy=st.lists(
            st.fixed_dictionaries(
                {"apiVersion": st.just("v1"), "kind": st.just("Node"), "name": dns_subdomains}
            ),
            max_size=3,
        ),
    )
    _optional(
        draw,
        out=status,
        key="phase",
        strategy=st.sampled_from(["Pending", "Provisioning", "Running", "ScalingUp", "Deleting"]),
    )
    _optional(draw, out=status, key="observedGeneration", strategy=st.integers(1, 2**40))
    _optional(
        draw, out=status, key="selector", strategy=st.just("cluster.x-k8s.io/pool-name=workers")
    )
    if draw(st.booleans()):
        status["deprecated"] = {
            "v1beta1": {
                "readyReplicas": draw(int32s),
                "failureReason": draw(reasons),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "severity": "Info",
                        "lastTransitionTime": draw(times),
                    }
                ],
            }
        }
    return status


@st.composite
def machine_pools(draw: st.DrawFn) -> _Json:
    """A MachinePool the CRD accepts, in wire form."""
    cluster_name = draw(dns_labels)
    spec: _Json = {
        "clusterName": cluster_name,
        "template": {"spec": draw(machine_specs(cluster_name=cluster_name))},
    }
    if draw(st.booleans()):
        spec["template"]["metadata"] = {"labels": draw(label_maps)}
    _optional(draw, out=spec, key="replicas", strategy=int32s)
    _optional(
        draw,
        out=spec,
        key="providerIDList",
        strategy=st.lists(provider_ids, unique=True, max_size=20),
    )
    _optional(draw, out=spec, key="failureDomains", strategy=st.lists(dns_labels, max_size=5))
    metadata: _Json = {"name": draw(dns_subdomains), "namespace": draw(dns_labels)}
    _optional(draw, out=metadata, key="labels", strategy=label_maps)
    _optional(draw, out=metadata, key="generation", strategy=st.integers(1, 2**40))
    _optional(draw, out=metadata, key="creationTimestamp", strategy=times)
    pool: _Json = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachinePool",
        "metadata": metadata,
        "spec": spec,
    }
    _optional(draw, out=pool, key="status", strategy=machine_pool_statuses())
    return pool


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no inf or NaN
    | short_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=8,
)
unknown_keys = st.text(_LOWER + _UPPER + _DIGITS, min_size=1, max_size=8).map("zz{}".format)
