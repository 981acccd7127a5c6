"""Scale-from-zero hints for cluster-autoscaler, published on the infrastructure pool.

A pool at zero replicas has no Node for cluster-autoscaler to copy, so it needs to be told
what a new Node would offer. An adapter that knows its instance types answers
:meth:`~controller.providers.adapter.PoolAdapter.capacity` (the facts are a
:class:`~controller.providers.adapter.NodeCapacity`); the infrastructure reconciler calls
:func:`publish_capacity`,
which writes the same facts two ways on the infra pool:

- the ``capacity.cluster-autoscaler.kubernetes.io/{cpu,memory,ephemeral-disk,maxPods,gpu-type,
  gpu-count}`` annotations (a person reads them with ``kubectl get -o yaml``; copy them onto the
  MachinePool, where cluster-autoscaler reads annotations, to override the type's values);
- ``status.capacity`` (a resource list: ``cpu``, ``memory``, ``ephemeral-storage``, ``pods``,
  ``<gpu-type>``), which is where cluster-autoscaler looks on the object a MachinePool's
  ``infrastructureRef`` names.

Invariants: only the annotation keys the adapter knows are written, so a person's own
capacity annotations for facts we do not know survive; an unknown instance type (``None``
from the hook) writes nothing and removes nothing; a pool whose annotations already match
costs no write. Adapters without capacity facts (the default hook answers ``None``) are left
alone.

Failure: nothing here calls the API server; the reconciler's commit writes the result.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.providers.adapter import PoolAdapter
from controller.runtime.store import Obj

__all__ = ["publish_capacity"]


def publish_capacity(*, adapter: PoolAdapter, infra: Obj, status: Obj) -> None:
    """Annotate ``infra`` and set ``status["capacity"]``, both on the caller's working copy
    (the reconciler's :class:`~controller.runtime.scope.ObjectScope` writes them)."""
    capacity = adapter.capacity(infra=infra)
    if capacity is None:
        return
    status["capacity"] = capacity.resources()
    meta = infra["metadata"]
    current: Mapping[str, str] = meta.get("annotations") or {}
    wanted = capacity.annotations()
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if changed:
        meta["annotations"] = {**current, **changed}
