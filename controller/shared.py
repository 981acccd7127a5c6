"""The pieces ``app.py`` builds once and lends every controller: one options object, and the
shared informers with their named indexes.

Informers are shared per (resource, namespaces, label selector) by the manager; an index on a
shared informer is seen by every controller that uses it, so its name is a global. Every index
name is a constant of this module, each registered by exactly one function here, the first
time its informer is asked for: a controller never registers an index itself, and a second
registration under a name raises (:meth:`~controller.runtime.store.Store.add_index`), so two
meanings can never share one name.

Indexes (value format in brackets):

- :data:`CONTROLLER_OWNER_INDEX` on Machines and infra machines
  [``<namespace>/<owner name>``];
- :data:`CLUSTER_INDEX` on MachinePools, Machines and MachineHealthChecks
  [``<namespace>/<spec.clusterName>``];
- :data:`POOL_PROVIDER_IDS_INDEX` on MachinePools [each ``spec.providerIDList`` entry];
- :data:`MACHINE_PROVIDER_ID_INDEX` on Machines [``<namespace>/<spec.providerID>``];
- :data:`BOOTSTRAP_SECRET_INDEX` on MachinePools [``<namespace>/<dataSecretName>``];
- :data:`INFRA_REF_INDEX` on MachinePools [``<namespace>/<group>/<kind>/<name>``].

Informers are made lazily (on first use), so a process that runs only some controllers lists
and watches only what those need. ``--watch-filter`` (``watch_filter``) applies to the objects
we own (MachinePools, Machines, infra machines, MachineHealthChecks); Clusters, Secrets and
the core's view of infra pools stay unfiltered, since they are only looked up or mapped to
already filtered objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from prometheus_client import CollectorRegistry

from controller.api.kinds import CLUSTER, MACHINE, MACHINE_HEALTH_CHECK, MACHINE_POOL, Kind
from controller.api.labels import CLUSTER_NAME_LABEL
from controller.runtime.events import EventRecorder
from controller.runtime.informer import Informer, Namespaces
from controller.runtime.kube import SECRETS
from controller.runtime.manager import Manager
from controller.runtime.store import CONTROLLER_OWNER_INDEX, Obj, controller_owner_keys

__all__ = [
    "BOOTSTRAP_SECRET_INDEX",
    "CLUSTER_INDEX",
    "CONTROLLER_OWNER_INDEX",
    "INFRA_REF_INDEX",
    "MACHINE_PROVIDER_ID_INDEX",
    "POOL_PROVIDER_IDS_INDEX",
    "ControllerOptions",
    "SharedInformers",
    "infra_ref_key",
    "object_key",
]

CLUSTER_INDEX = "cluster"
POOL_PROVIDER_IDS_INDEX = "providerIDList"
MACHINE_PROVIDER_ID_INDEX = "providerID"
BOOTSTRAP_SECRET_INDEX = "bootstrapSecret"
INFRA_REF_INDEX = "infrastructureRef"


def object_key(obj: Obj) -> str:
    """``<namespace>/<name>`` of a namespaced object."""
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def infra_ref_key(*, namespace: object, group: object, kind: object, name: object) -> str:
    """The :data:`INFRA_REF_INDEX` value of an infrastructure reference."""
    return f"{namespace}/{group}/{kind}/{name}"


def by_cluster(obj: Obj) -> Iterable[str]:
    name = (obj.get("spec") or {}).get("clusterName")
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [f"{namespace}/{name}"] if name else []


def pool_provider_ids(obj: Obj) -> Iterable[str]:
    return list((obj.get("spec") or {}).get("providerIDList") or [])


def machine_provider_id(obj: Obj) -> Iterable[str]:
    provider_id = (obj.get("spec") or {}).get("providerID")
    namespace = obj.get("metadata", {}).get("namespace")
    return [f"{namespace}/{provider_id}"] if provider_id else []


def pool_bootstrap_secret(obj: Obj) -> Iterable[str]:
    meta = obj.get("metadata", {})
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = (spec.get("bootstrap") or {}).get("dataSecretName")
    return [f"{meta.get('namespace')}/{name}"] if name else []


def pool_infra_ref(obj: Obj) -> Iterable[str]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    ref = spec.get("infrastructureRef") or {}
    if not ref.get("name"):
        return []
    namespace = obj.get("metadata", {}).get("namespace")
    return [infra_ref_key(namespace=namespace, group=ref.get("apiGroup"), kind=ref.get("kind"),
                          name=ref.get("name"))]  # fmt: skip


class SharedInformers:
    """The informers several controllers share, each with its indexes registered once."""

    def __init__(
        self, *, manager: Manager, namespace: Namespaces, watch_filter: str | None
    ) -> None:
        self._manager = manager
        self._namespace = namespace
        self._watch_filter = watch_filter
        self._infra_pools: dict[Kind, Informer] = {}
        self._infra_machines: dict[Kind, Informer] = {}

    @cached_property
    def pools(self) -> Informer:
        """MachinePools (filtered)."""
        informer = self._owned(MACHINE_POOL)
        informer.store.add_index(name=POOL_PROVIDER_IDS_INDEX, func=pool_provider_ids)
        informer.store.add_index(name=CLUSTER_INDEX, func=by_cluster)
        informer.store.add_index(name=BOOTSTRAP_SECRET_INDEX, func=pool_bootstrap_secret)
        informer.store.add_index(name=INFRA_REF_INDEX, func=pool_infra_ref)
        return informer

    @cached_property
    def machines(self) -> Informer:
        """Cluster API Machines (filtered)."""
        informer = self._owned(MACHINE)
        informer.store.add_index(name=CONTROLLER_OWNER_INDEX, func=controller_owner_keys)
        informer.store.add_index(name=MACHINE_PROVIDER_ID_INDEX, func=machine_provider_id)
        informer.store.add_index(name=CLUSTER_INDEX, func=by_cluster)
        return informer

    @cached_property
    def health_checks(self) -> Informer:
        """MachineHealthChecks (filtered)."""
        informer = self._owned(MACHINE_HEALTH_CHECK)
        informer.store.add_index(name=CLUSTER_INDEX, func=by_cluster)
        return informer

    @cached_property
    def clusters(self) -> Informer:
        """Cluster API Clusters (unfiltered)."""
        return self._manager.informer(CLUSTER, namespace=self._namespace)

    @cached_property
    def secrets(self) -> Informer:
        """Secrets labelled ``cluster.x-k8s.io/cluster-name``: kubeconfig and bootstrap data
        Secrets (unfiltered by ``--watch-filter``)."""
        return self._manager.informer(
            SECRETS, namespace=self._namespace, label_selector=CLUSTER_NAME_LABEL
        )

    def infra_pools(self, kind: Kind) -> Informer:
        """Infra pools of ``kind`` as the core sees them (unfiltered: only looked up)."""
        if kind not in self._infra_pools:
            self._infra_pools[kind] = self._manager.informer(kind, namespace=self._namespace)
        return self._infra_pools[kind]

    def infra_machines(self, kind: Kind) -> Informer:
        """Infra machines of ``kind`` (filtered)."""
        if kind not in self._infra_machines:
            informer = self._owned(kind)
            informer.store.add_index(name=CONTROLLER_OWNER_INDEX, func=controller_owner_keys)
            self._infra_machines[kind] = informer
        return self._infra_machines[kind]

    def _owned(self, kind: Kind) -> Informer:
        return self._manager.informer(
            kind, namespace=self._namespace, label_selector=self._watch_filter
        )


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    """What every ``setup_*`` function takes: the manager, where and how to run, and the
    shared informers. Built once by ``app.py`` (:func:`controller.app.controller_options`)."""

    manager: Manager
    #: The namespaces to watch (``--namespace``); ``None`` for all.
    namespace: Namespaces
    recorder: EventRecorder | None
    concurrency: int
    reconcile_timeout: float
    #: ``--watch-filter`` as a label selector, or ``None``.
    watch_filter: str | None
    informers: SharedInformers = field(compare=False)

    @property
    def registry(self) -> CollectorRegistry:
        return self.manager.registry
