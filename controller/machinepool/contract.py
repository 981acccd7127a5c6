"""Which kinds a MachinePool's references may name: Cluster API contract kinds for the role.

A reference (``apiGroup`` + ``kind``) resolves, as in Cluster API, only to a kind whose CRD
carries a contract label: ``cluster.x-k8s.io/v1beta2`` (this controller's contract) or, for
providers not yet moved on, ``cluster.x-k8s.io/v1beta1``. The label's value lists the CRD
versions that implement that contract (``_``-separated); the newest of them (Kubernetes
order: GA, then beta, then alpha) is the version read and written, and it must be served.
Cluster API names the CRD ``<plural>.<group>``; the plural comes from discovery here.

"For its role" adds one rule Cluster API leaves to RBAC: a group in Cluster API's own domain
(``cluster.x-k8s.io`` and its subdomains) must be the role's own group,
``infrastructure.cluster.x-k8s.io`` for ``infrastructureRef`` and
``bootstrap.cluster.x-k8s.io`` for ``configRef``. So a reference can never make a pool the
owner of a MachinePool, Cluster, Machine, control plane or a config of the other role, all of
which carry the contract label too. Groups outside the domain (``infrastructure.foo.com``)
are accepted with the label, as the contract allows.

Answers are cached with discovery's and the CRD's (:class:`~controller.runtime.crds.CrdCatalog`),
so resolving costs no API call per reconcile.

Failure: :class:`~controller.runtime.discovery.UnknownKindError` when the kind is not served;
:class:`UnsupportedKindError` when it is served but is not a contract kind for the role (no
CRD, no contract label, a label naming no served version, or a group of another role). Both
are :class:`LookupError`; API errors propagate.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

from controller.api.meta import ContractVersionedObjectReference
from controller.runtime.crds import CrdCatalog
from controller.runtime.discovery import RestMapper, ServedResource

CAPI_DOMAIN = "cluster.x-k8s.io"
#: Contract versions this controller reads, preferred first.
CONTRACT_VERSIONS = ("v1beta2", "v1beta1")


class Role(enum.Enum):
    INFRASTRUCTURE = "infrastructure"
    BOOTSTRAP = "bootstrap"

    @property
    def group(self) -> str:
        return f"{self.value}.{CAPI_DOMAIN}"

    @property
    def field(self) -> str:
        return "infrastructureRef" if self is Role.INFRASTRUCTURE else "configRef"


class UnsupportedKindError(LookupError):
    """The kind is served but is not a Cluster API contract kind for the reference's role."""

    def __init__(self, *, group: str, kind: str, role: Role, why: str) -> None:
        super().__init__(
            f"{role.field} kind {kind} in API group {group!r} is not a Cluster API "
            f"{role.value} kind: {why}"
        )
        self.group = group
        self.kind = kind


_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_rank(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version order: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else."""
    match = _VERSION.match(version)
    if match is None:
        return (-1, 0, 0, version)
    major, stage, minor = match.groups()
    level = {"alpha": 0, "beta": 1, None: 2}[stage]
    return (level, int(major), int(minor or 0), version)


def contract_version(labels: Mapping[str, str], *, served: frozenset[str]) -> str | None:
    """The API version a CRD with ``labels`` implements the contract in, or None."""
    for contract in CONTRACT_VERSIONS:
        value = str(labels.get(f"{CAPI_DOMAIN}/{contract}") or "")
        versions = [v for v in value.split("_") if v]
        if versions:
            newest = max(versions, key=_version_rank)
            return newest if newest in served else None
    return None


class ContractKinds:
    """Resolves references to contract kinds; see the module docstring."""

    def __init__(self, *, mapper: RestMapper, crds: CrdCatalog) -> None:
        self.mapper = mapper
        self.crds = crds

    async def resource_for(
        self, *, ref: ContractVersionedObjectReference, role: Role
    ) -> ServedResource:
        group, kind = ref.api_group, ref.kind
        if (group == CAPI_DOMAIN or group.endswith(f".{CAPI_DOMAIN}")) and group != role.group:
            raise UnsupportedKindError(
                group=group, kind=kind, role=role,
                why=f"a {role.field} in Cluster API's domain must be in {role.group!r}",
            )  # fmt: skip
        served = await self.mapper.resource_for(group=group, kind=kind)
        crd = await self.crds.get(group=group, plural=served.plural) if group else None
        if crd is None:
            raise UnsupportedKindError(
                group=group, kind=kind, role=role,
                why=f"it has no CustomResourceDefinition {served.plural}.{group}",
            )  # fmt: skip
        version = contract_version(crd.labels, served=crd.served_versions)
        if version is None:
            wanted = " or ".join(f"{CAPI_DOMAIN}/{c}" for c in CONTRACT_VERSIONS)
            raise UnsupportedKindError(
                group=group, kind=kind, role=role,
                why=f"its CustomResourceDefinition {crd.name} has no {wanted} label "
                "naming a served version",
            )  # fmt: skip
        if not served.namespaced:
            raise UnsupportedKindError(
                group=group, kind=kind, role=role, why="it is cluster-scoped"
            )
        return ServedResource(
            group=group, version=version, plural=served.plural, kind=kind, namespaced=True
        )
