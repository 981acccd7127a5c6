"""The labels our CRDs carry so Cluster API's own tooling finds and understands our kinds.

- ``cluster.x-k8s.io/<contract>: <versions>`` (the *contract label*): which API versions of a
  kind implement a Cluster API contract. Cluster API reads it from the CRD of a referenced
  kind (``infrastructureRef``, ``configRef``) to pick the version to read; the value is a
  ``_``-separated list of versions.
- ``cluster.x-k8s.io/provider: <type>-<name>``: the provider a component belongs to, as
  clusterctl names providers (``cluster-api`` for the core, ``infrastructure-inmemory``).
- ``clusterctl.cluster.x-k8s.io: ""``: clusterctl adds it to every component it installs and
  ``clusterctl move`` discovers the kinds to move by it; we install with Helm, so our CRDs
  carry it themselves.
- ``clusterctl.cluster.x-k8s.io/move: ""`` on a CRD: ``clusterctl move`` moves every object of
  that kind in the namespace, not only those reachable from a Cluster through owner
  references — so an infrastructure pool not yet adopted by its MachinePool still travels.
- ``clusterctl.cluster.x-k8s.io/move-hierarchy: ""``: for root kinds that own a tree outside
  any Cluster (cluster-wide identities). None of our kinds is such a root; the constant is
  here for providers that have one.

Invariants: :func:`crd_labels` is pure and deterministic; every value is a valid label value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

__all__ = [
    "CLUSTERCTL_LABEL",
    "CONTRACT",
    "CORE_CRD_LABELS",
    "CORE_PROVIDER",
    "MOVE_HIERARCHY_LABEL",
    "MOVE_LABEL",
    "PROVIDER_LABEL",
    "contract_label",
    "crd_labels",
]

#: The Cluster API contract our kinds implement.
CONTRACT = "v1beta2"
PROVIDER_LABEL = "cluster.x-k8s.io/provider"
CLUSTERCTL_LABEL = "clusterctl.cluster.x-k8s.io"
MOVE_LABEL = "clusterctl.cluster.x-k8s.io/move"
MOVE_HIERARCHY_LABEL = "clusterctl.cluster.x-k8s.io/move-hierarchy"
#: The provider name clusterctl gives Cluster API's core (Cluster, Machine, MachinePool).
CORE_PROVIDER = "cluster-api"


def contract_label(contract: str = CONTRACT) -> str:
    """``cluster.x-k8s.io/v1beta2``: the key of a contract label."""
    return f"cluster.x-k8s.io/{contract}"


def crd_labels(
    *,
    provider: str,
    versions: Sequence[str],
    move: bool = False,
    move_hierarchy: bool = False,
) -> Mapping[str, str]:
    """The labels of one CRD: contract, provider, clusterctl discovery and move markers."""
    if not versions:
        raise ValueError("a contract label needs at least one version")
    labels = {
        contract_label(): "_".join(versions),
        PROVIDER_LABEL: provider,
        CLUSTERCTL_LABEL: "",
    }
    if move:
        labels[MOVE_LABEL] = ""
    if move_hierarchy:
        labels[MOVE_HIERARCHY_LABEL] = ""
    return MappingProxyType(labels)


#: Labels of the core CRDs (Cluster, Machine): as Cluster API's own core CRDs.
CORE_CRD_LABELS: Mapping[str, str] = crd_labels(provider=CORE_PROVIDER, versions=[CONTRACT])
