"""Infra machines: one object per instance of a group (an ``InMemoryMachine``, an
``AWSMachine``), kept in step with what the cloud reports.

For each instance that is not terminating there is exactly one infra machine, named by
:func:`controller.api.labels.machine_name`, owned (controller) by the infra pool, labelled
with the pool-name and cluster-name labels, created with our finalizer and
``spec.providerID``/``spec.instanceID``. Its status says whether the instance runs
(``ready``, ``initialization.provisioned``), its ``addresses`` when the provider reports
any (a Machine copies them, as in Cluster API; none reported leaves the field as it was), and
whether it was launched from the group's current template (the ``UpToDate`` condition).
The core MachinePool controller makes a ``Machine`` for each one.

Deletion goes one way only, so nothing is orphaned:

- an infra machine being deleted (its Machine's deletion path got there, after the drain)
  has its instance deleted with the group shrunk by one, then loses the finalizer; at the
  group's minimum size the group is not shrunk (the cloud would refuse) and replaces the
  instance instead;
- an infra machine whose instance is gone (the cloud lost it, a person terminated it) is
  deleted and loses the finalizer; the Machine side then cleans up its Machine and Node.

Failure: provider errors propagate (the reconciler requeues); API conflicts and "not found"
on our own writes are absorbed, since the next reconcile sees the truth.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.api.kinds import Kind
from controller.api.labels import (
    CLUSTER_NAME_LABEL,
    DELETE_MACHINE_ANNOTATION,
    DELETE_REASON_ANNOTATION,
    POOL_NAME_LABEL,
    WATCH_FILTER_LABEL,
    machine_name,
    pool_label_value,
)
from controller.infrastructure.scaling import Member
from controller.providers.base import GroupStatus, Instance, InstanceGroupProvider
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.finalizers import remove_finalizer
from controller.runtime.informer import Informer
from controller.runtime.kube import ApiError, KubeClient
from controller.runtime.patch import merge_patch
from controller.runtime.store import CONTROLLER_OWNER_INDEX, Obj

INFRA_MACHINE_FINALIZER = "machinepool.infrastructure.cluster.x-k8s.io/instance"

_log = structlog.get_logger(__name__)


def _inherited(infra: Obj) -> dict[str, str]:
    labels = infra["metadata"].get("labels") or {}
    return {WATCH_FILTER_LABEL: labels[WATCH_FILTER_LABEL]} if WATCH_FILTER_LABEL in labels else {}


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class InfraMachines:
    """The infra machines of one kind; see the module docstring."""

    def __init__(
        self, *, kube: KubeClient, kind: Kind, informer: Informer, machines: Informer
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.informer = informer
        self.machines = machines

    def of(self, infra: Obj) -> dict[str, Obj]:
        """The infra machines the infra pool controls, by name."""
        meta = infra["metadata"]
        uid = meta.get("uid")
        found: dict[str, Obj] = {}
        for obj in self.informer.store.by_index(
            name=CONTROLLER_OWNER_INDEX, value=f"{meta['namespace']}/{meta['name']}"
        ):
            if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or []):
                found[obj["metadata"]["name"]] = obj
        return found

    def machine(self, *, namespace: str, name: str) -> Obj | None:
        return self.machines.store.get(f"{namespace}/{name}")

    def members(self, *, infra: Obj, group: GroupStatus) -> list[Member]:
        """The group's instances with what their Machines say (see :mod:`.scaling`)."""
        namespace = str(infra["metadata"]["namespace"])
        pool = str(infra["metadata"]["name"])
        existing = self.of(infra)
        result = []
        for instance in group.instances:
            name = machine_name(pool=pool, instance_id=instance.instance_id)
            infra_machine = existing.get(name)
            machine = self.machine(namespace=namespace, name=name)
            going = bool(
                (infra_machine and infra_machine["metadata"].get("deletionTimestamp"))
                or (machine and machine["metadata"].get("deletionTimestamp"))
            )
            annotations = (machine or {}).get("metadata", {}).get("annotations") or {}
            machine_conditions = ((machine or {}).get("status") or {}).get("conditions")
            result.append(
                Member(
                    instance=instance,
                    going=going,
                    marked=DELETE_MACHINE_ANNOTATION in annotations,
                    ready=conditions.is_true(machine_conditions, "Ready"),
                )
            )
        return result

    def unaccounted_deletions(self, *, infra: Obj) -> list[str]:
        """Machines of this pool deleted by someone else whose deletion the MachinePool
        controller has not yet turned into a lower ``spec.replicas``."""
        namespace = str(infra["metadata"]["namespace"])
        names = []
        for name in self.of(infra):
            machine = self.machine(namespace=namespace, name=name)
            if machine is None or not machine["metadata"].get("deletionTimestamp"):
                continue
            if DELETE_REASON_ANNOTATION not in (machine["metadata"].get("annotations") or {}):
                names.append(name)
        return names

    async def sync(
        self,
        *,
        infra: Obj,
        pool: Obj,
        group: GroupStatus,
        provider: InstanceGroupProvider,
        min_size: int,
    ) -> bool:
        """Create, update and retire infra machines; True when an instance was deleted (the
        caller describes the group again). An instance is deleted with the group shrunk by
        one while the group is above ``min_size``; at the minimum the cloud replaces it."""
        namespace = str(infra["metadata"]["namespace"])
        pool_name = str(infra["metadata"]["name"])
        existing = self.of(infra)
        instances: dict[str, Instance] = {
            machine_name(pool=pool_name, instance_id=i.instance_id): i
            for i in group.instances
            if i.state != "terminating"
        }
        deleted_instance = False
        capacity = group.desired_capacity
        for name, obj in existing.items():
            instance = instances.get(name)
            deleting = bool(obj["metadata"].get("deletionTimestamp"))
            if instance is not None and not deleting:
                await self._update(obj, instance=instance, group=group)
                continue
            if instance is not None and deleting:
                shrink = capacity > min_size
                _log.info("deleting instance of a deleted machine", machine=name,
                          instance=instance.instance_id, shrink=shrink)  # fmt: skip
                await provider.delete_instance(
                    name=group.name, instance_id=instance.instance_id, shrink=shrink
                )
                capacity -= 1 if shrink else 0
                deleted_instance = True
            elif not deleting:
                _log.info("instance gone; deleting its machine", machine=name)
                await self._delete(obj)
            await self._release(obj)
        for name, instance in instances.items():
            if name not in existing:
                await self._create(
                    name=name, namespace=namespace, infra=infra, pool=pool, instance=instance,
                    group=group,
                )  # fmt: skip
        return deleted_instance

    async def release_all(self, *, infra: Obj) -> None:
        """The group is gone: every infra machine goes, without further cloud calls."""
        for obj in self.of(infra).values():
            if not obj["metadata"].get("deletionTimestamp"):
                await self._delete(obj)
            await self._release(obj)

    # ------------------------------------------------------------ writes

    def _status(self, *, instance: Instance, group: GroupStatus, generation: int | None) -> Obj:
        running = instance.state == "running"
        up_to_date = instance.version == group.template_version
        conds: list[dict[str, Any]] = []
        conds = conditions.set_v1beta2(
            conds,
            Cond(
                type="Ready",
                status="True" if running else "False",
                reason="InstanceRunning" if running else f"Instance{instance.state.title()}",
                message="" if running else f"instance {instance.instance_id} is {instance.state}",
            ),
            generation=generation,
        )
        conds = conditions.set_v1beta2(
            conds,
            Cond(
                type="UpToDate",
                status="True" if up_to_date else "False",
                reason="UpToDate" if up_to_date else "TemplateChanged",
                message=""
                if up_to_date
                else f"launched from template version {instance.version}, "
                f"the group is at {group.template_version}",
            ),
            generation=generation,
        )
        status: Obj = {
            "ready": running,
            "initialization": {"provisioned": running},
            "failureDomain": instance.zone,
            "conditions": conds,
        }
        if instance.addresses:
            status["addresses"] = [
                {"type": a.type, "address": a.address} for a in instance.addresses
            ]
        return status

    async def _create(
        self,
        *,
        name: str,
        namespace: str,
        infra: Obj,
        pool: Obj,
        instance: Instance,
        group: GroupStatus,
    ) -> None:
        meta = infra["metadata"]
        body: Obj = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    POOL_NAME_LABEL: pool_label_value(str(pool["metadata"]["name"])),
                    CLUSTER_NAME_LABEL: str(pool["spec"].get("clusterName", "")),
                    **_inherited(infra),
                },
                "finalizers": [INFRA_MACHINE_FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": infra.get("apiVersion", self.kind.api_version),
                        "kind": infra.get("kind", ""),
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "providerID": instance.provider_id,
                "instanceID": instance.instance_id,
                "failureDomain": instance.zone,
            },
        }
        try:
            created = await self.kube.create(self.kind, namespace=namespace, body=body)
        except ApiError as exc:
            if exc.status == 409:
                return  # made by an earlier reconcile our cache has not seen yet
            raise
        status = self._status(instance=instance, group=group,
                              generation=created["metadata"].get("generation"))  # fmt: skip
        await self.kube.merge_patch(
            self.kind, namespace=namespace, name=name, subresource="status",
            patch={"status": status},
        )  # fmt: skip

    async def _update(self, obj: Obj, *, instance: Instance, group: GroupStatus) -> None:
        meta = obj["metadata"]
        current = obj.get("status") or {}
        wanted = copy.deepcopy(current)
        fresh = self._status(instance=instance, group=group, generation=meta.get("generation"))
        for key in ("ready", "initialization", "failureDomain", "addresses"):
            if key in fresh:
                wanted[key] = fresh[key]
        conds = list(current.get("conditions") or [])
        for cond in fresh["conditions"]:
            conds = conditions.set_v1beta2(
                conds,
                Cond(type=cond["type"], status=cond["status"], reason=cond["reason"],
                     message=cond.get("message", "")),
                generation=meta.get("generation"),
            )  # fmt: skip
        wanted["conditions"] = conds
        patch = merge_patch(current, wanted)
        if patch:
            try:
                await self.kube.merge_patch(
                    self.kind, namespace=meta["namespace"], name=meta["name"],
                    subresource="status", patch={"status": patch},
                )  # fmt: skip
            except ApiError as exc:
                if not exc.not_found:
                    raise

    async def _delete(self, obj: Obj) -> None:
        meta = obj["metadata"]
        try:
            await self.kube.delete(self.kind, namespace=meta["namespace"], name=meta["name"])
        except ApiError as exc:
            if not exc.not_found:
                raise

    async def _release(self, obj: Obj) -> None:
        if INFRA_MACHINE_FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return
        try:
            await remove_finalizer(
                kube=self.kube, resource=self.kind, obj=obj, finalizer=INFRA_MACHINE_FINALIZER
            )
        except ApiError as exc:
            if not exc.not_found:
                raise


__all__ = [
    "INFRA_MACHINE_FINALIZER",
    "InfraMachines",
]
