"""The product as deployed with AWS: ``machinepool-controller run --controllers
machinepool,aws`` as its own process against the real API server and moto (through the
counting proxy), credentials from the standard chain (environment). The CAPA manifest
converges, the AWS call metrics are on /metrics, and SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.kinds import AWS_MACHINE_POOL, MACHINE_POOL, Kind
from controller.providers.aws.emulator import FaultProxy
from controller.providers.inmemory.nodes import NodeRegistration, node_object, node_status
from controller.runtime.kube import NODES, SECRETS, ApiError, KubeClient, RestMetrics
from controller.testing import ControlPlane
from controller.testing.ports import free_port
from controller.testing.scenario import create_workload_cluster
from controller.testing.waiting import until
from tests.test_cli import spawned

from .conftest import REGION
from .test_e2e import MANIFEST


async def test_run_with_the_aws_controller(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, proxy: FaultProxy
) -> None:
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await create_workload_cluster(kube=kube, control_plane=control_plane, namespace=namespace)
    await kube.create(
        SECRETS, namespace=namespace,
        body={
            "metadata": {"name": "w-boot", "labels": {"cluster.x-k8s.io/cluster-name": "c1"}},
            "data": {"value": base64.b64encode(b"#cloud-config\n").decode()},
        },
    )  # fmt: skip
    kinds: dict[str, Kind] = {"AWSMachinePool": AWS_MACHINE_POOL, "MachinePool": MACHINE_POOL}
    for doc in yaml.safe_load_all(MANIFEST.format(name="w", replicas=2)):
        await kube.create(kinds[doc["kind"]], namespace=namespace, body=doc)

    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true", AWS_REGION=REGION,
    )  # fmt: skip
    registered: list[str] = []

    async def kubelets() -> bool:
        """Plays the kubelets: a Ready Node for each provider ID; True at 2 Ready Nodes."""
        infra = await kube.get(AWS_MACHINE_POOL, namespace=namespace, name="w")
        for provider_id in (infra.get("spec") or {}).get("providerIDList") or []:
            name = f"{namespace}-{provider_id.rsplit('/', 1)[-1]}"
            if name in registered:
                continue
            node = NodeRegistration(
                name=name, provider_id=provider_id, zone=provider_id.split("/")[3],
                kubelet_version="v1.35.4",
            )  # fmt: skip
            await kube.create(NODES, body=node_object(node))
            await kube.merge_patch(
                NODES, name=name, subresource="status",
                patch={"status": node_status(ready="True", node=node)},
            )  # fmt: skip
            registered.append(name)
        pool = await kube.get(MACHINE_POOL, namespace=namespace, name="w")
        status: dict[str, Any] = pool.get("status") or {}
        return status.get("phase") == "Running" and status.get("readyReplicas") == 2

    try:
        async with spawned(
            "run", "--kubeconfig", str(control_plane.kubeconfig_path), "--namespace", namespace,
            "--controllers", "machinepool,aws", "--aws-endpoint-url", proxy.url,
            "--aws-poll-interval", "2s", "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
            "--metrics-secure=false", "--health-probe-bind-address", "0", env=env,
        ) as proc:  # fmt: skip
            await until(kubelets, timeout=90, what="2 replicas Running")
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp,
            ):
                text = await resp.text()
            created = (
                'machinepool_provider_requests_total{code="OK",'
                'operation="CreateAutoScalingGroup",provider="aws"} 1.0'
            )
            assert created in text
            assert "machinepool_provider_request_duration_seconds_bucket" in text
            assert "testing" not in text
            assert proxy.record.calls["CreateAutoScalingGroup"] == 1
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        for name in registered:
            with contextlib.suppress(ApiError):
                await kube.delete(NODES, name=name)
