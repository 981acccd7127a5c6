"""Wire the AWSMachinePool reconciler into a manager.

The generic infrastructure reconciler (:mod:`controller.providers.setup`) with the AWS
adapter, plus one more event source: a bootstrap data Secret (from the shared cache of
Secrets labelled ``cluster.x-k8s.io/cluster-name``) re-queues the AWSMachinePools whose
MachinePool names it, so a pool waiting for its user data starts as soon as it exists, and a
changed Secret (a rotated bootstrap token) becomes a new launch template version.

The provider's poll interval is also the describe cache's lifetime, so a converged pool is
looked at once per interval and every look is served by one batched call per 100 groups.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controller.api.kinds import MACHINE_POOL
from controller.api.labels import CLUSTER_NAME_LABEL as BOOTSTRAP_SECRET_LABEL
from controller.providers.aws.adapter import AwsPoolAdapter
from controller.providers.aws.provider import AwsProvider
from controller.providers.setup import setup_infrastructure_controller
from controller.runtime.controller import Controller
from controller.runtime.events import EventRecorder
from controller.runtime.informer import InformerEvent, Namespaces
from controller.runtime.kube import SECRETS
from controller.runtime.manager import Manager

__all__ = ["BOOTSTRAP_SECRET_LABEL", "setup_aws_controller"]


def setup_aws_controller(
    *,
    manager: Manager,
    namespace: Namespaces,
    provider: AwsProvider,
    recorder: EventRecorder | None,
    concurrency: int,
    reconcile_timeout: float,
    registry: CollectorRegistry,
    busy_poll: float = 2.0,
    steady_poll: float = 60.0,
    watch_filter: str | None = None,
) -> Controller:
    secrets = manager.informer(SECRETS, namespace=namespace, label_selector=BOOTSTRAP_SECRET_LABEL)
    adapter = AwsPoolAdapter(secrets=secrets, templates=provider.templates)
    controller = setup_infrastructure_controller(
        manager=manager,
        namespace=namespace,
        adapter=adapter,
        provider=provider,
        recorder=recorder,
        concurrency=concurrency,
        reconcile_timeout=reconcile_timeout,
        registry=registry,
        busy_poll=busy_poll,
        steady_poll=steady_poll,
        watch_filter=watch_filter,
    )
    pools = manager.informer(MACHINE_POOL, namespace=namespace, label_selector=watch_filter)

    def from_secret(event: InformerEvent) -> list[str]:
        meta = event.obj.get("metadata") or {}
        keys = []
        for pool in pools.store.values():
            spec = ((pool.get("spec") or {}).get("template") or {}).get("spec") or {}
            if pool["metadata"].get("namespace") != meta.get("namespace"):
                continue
            if (spec.get("bootstrap") or {}).get("dataSecretName") != meta.get("name"):
                continue
            ref = spec.get("infrastructureRef") or {}
            if ref.get("kind") == adapter.kind.kind and ref.get("apiGroup") == adapter.kind.group:
                keys.append(f"{meta['namespace']}/{ref['name']}")
        return keys

    controller.watch(secrets, from_secret)
    return controller
