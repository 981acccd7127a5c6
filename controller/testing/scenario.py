"""Building blocks for tests, demos and benchmarks that need a Cluster API setting.

:func:`create_workload_cluster` makes a ``Cluster`` and its ``<name>-kubeconfig`` Secret
pointing at a :class:`~controller.testing.ControlPlane` (the management cluster doubles as
the workload cluster, as in Cluster API's own envtest-based tests);
:func:`create_inmemory_pool` makes an ``InMemoryMachinePool`` and the ``MachinePool`` that
uses it, written as a person would write them for Cluster API.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import yaml

from controller.api.kinds import CLUSTER, IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.runtime.kube import SECRETS, KubeClient
from controller.testing.controlplane import ControlPlane

FAST_TEMPLATE: Mapping[str, Any] = {"version": "1", "bootDelaySeconds": 0, "readyDelaySeconds": 0}


async def create_workload_cluster(
    *, kube: KubeClient, control_plane: ControlPlane, namespace: str, name: str = "c1"
) -> None:
    """A Cluster and its kubeconfig Secret (labelled as Cluster API labels it)."""
    kubeconfig = yaml.safe_dump(control_plane.kubeconfig()).encode()
    await kube.create(CLUSTER, namespace=namespace, body={"metadata": {"name": name}, "spec": {}})
    await kube.create(
        SECRETS,
        namespace=namespace,
        body={
            "metadata": {
                "name": f"{name}-kubeconfig",
                "labels": {"cluster.x-k8s.io/cluster-name": name},
            },
            "type": "cluster.x-k8s.io/secret",
            "data": {"value": base64.b64encode(kubeconfig).decode()},
        },
    )


def machine_pool_body(
    *, name: str, cluster: str, replicas: int, infra_name: str | None = None
) -> dict[str, Any]:
    """A v1beta2 MachinePool with plain bootstrap data and an InMemoryMachinePool."""
    return {
        "metadata": {"name": name},
        "spec": {
            "clusterName": cluster,
            "replicas": replicas,
            "template": {
                "spec": {
                    "clusterName": cluster,
                    "version": "v1.35.4",
                    "bootstrap": {"dataSecretName": "boot"},
                    "infrastructureRef": {
                        "apiGroup": IN_MEMORY_MACHINE_POOL.group,
                        "kind": IN_MEMORY_MACHINE_POOL.kind,
                        "name": infra_name or name,
                    },
                }
            },
        },
    }


async def create_inmemory_pool(
    *,
    kube: KubeClient,
    namespace: str,
    name: str = "p1",
    cluster: str = "c1",
    replicas: int = 1,
    template: Mapping[str, Any] = FAST_TEMPLATE,
    **infra_spec: Any,
) -> None:
    """An InMemoryMachinePool (``template`` plus ``infra_spec``) and its MachinePool."""
    await kube.create(
        IN_MEMORY_MACHINE_POOL,
        namespace=namespace,
        body={"metadata": {"name": name}, "spec": {"template": dict(template), **infra_spec}},
    )
    await kube.create(
        MACHINE_POOL,
        namespace=namespace,
        body=machine_pool_body(name=name, cluster=cluster, replicas=replicas),
    )
