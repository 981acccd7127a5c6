"""The MachineHealthCheck CRD on the real API server: Cluster API manifests apply, defaults
are filled in, and bad input is refused by CEL with a message a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.api.healthcheck import MachineHealthCheck
from controller.api.kinds import MACHINE_HEALTH_CHECK
from controller.runtime.kube import ApiError, KubeClient, RestMetrics

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "machinehealthcheck.yaml"


def _body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": MACHINE_HEALTH_CHECK.api_version,
        "kind": MACHINE_HEALTH_CHECK.kind,
        "metadata": {"name": name},
        "spec": {
            "clusterName": "c1",
            "selector": {"matchLabels": {"cluster.x-k8s.io/pool-name": "workers"}},
            **spec,
        },
    }


def _kube(api_client: client.ApiClient) -> KubeClient:
    return KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))


async def test_a_cluster_api_manifest_applies_and_gets_the_default_startup_timeout(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    body = _body(
        "workers",
        checks={"unhealthyNodeConditions": [
            {"type": "Ready", "status": "Unknown", "timeoutSeconds": 300},
            {"type": "Ready", "status": "False", "timeoutSeconds": 300}]},
        remediation={"triggerIf": {"unhealthyLessThanOrEqualTo": "40%"}},
    )  # fmt: skip
    created = await kube.create(MACHINE_HEALTH_CHECK, namespace=namespace, body=body)
    mhc = MachineHealthCheck.from_dict(created)
    assert mhc.spec.checks.node_startup_timeout_seconds == 600
    assert mhc.spec.remediation.trigger_if is not None
    assert mhc.spec.remediation.trigger_if.unhealthy_less_than_or_equal_to == "40%"
    assert MachineHealthCheck.from_dict(created).to_dict() == created

    ranged = await kube.create(
        MACHINE_HEALTH_CHECK, namespace=namespace,
        body=_body("ranged", remediation={"triggerIf": {"unhealthyInRange": "[1-3]",
                                                       "unhealthyLessThanOrEqualTo": 2}}),
    )  # fmt: skip
    assert ranged["spec"]["remediation"]["triggerIf"]["unhealthyLessThanOrEqualTo"] == 2

    machine_conditions = [
        {"type": "DiskPressureExample", "status": "True", "timeoutSeconds": 300},
        {"type": "example.com/Wedged", "status": "Unknown", "timeoutSeconds": 0},
    ]
    with_machine = await kube.create(
        MACHINE_HEALTH_CHECK, namespace=namespace,
        body=_body("machine-conditions", checks={"unhealthyMachineConditions": machine_conditions}),
    )  # fmt: skip
    assert with_machine["spec"]["checks"]["unhealthyMachineConditions"] == machine_conditions
    assert MachineHealthCheck.from_dict(with_machine).to_dict() == with_machine


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"remediation": {"triggerIf": {"unhealthyLessThanOrEqualTo": "140%"}}},
         "percentage from 0% to 100%"),
        ({"remediation": {"triggerIf": {"unhealthyLessThanOrEqualTo": "many"}}},
         "percentage from 0% to 100%"),
        ({"remediation": {"triggerIf": {"unhealthyLessThanOrEqualTo": -1}}},
         "non-negative number of machines"),
        ({"remediation": {"triggerIf": {"unhealthyInRange": "[3-1]"}}}, "with a <= b"),
        ({"remediation": {"triggerIf": {"unhealthyInRange": "3-1"}}}, "should match"),
        ({"selector": {}}, "must not be empty"),
        ({"selector": {"matchLabels": {}}}, "must not be empty"),
        ({"checks": {"nodeStartupTimeoutSeconds": -5}}, "greater than or equal to 0"),
        ({"checks": {"unhealthyMachineConditions": [
            {"type": "DiskPressureExample", "status": "Maybe", "timeoutSeconds": 60}]}},
         'supported values: "True", "False", "Unknown"'),
        ({"checks": {"unhealthyMachineConditions": [
            {"type": "HealthCheckSucceeded", "status": "False", "timeoutSeconds": 60}]}},
         "must not be one of Ready, Available, HealthCheckSucceeded"),
        ({"checks": {"unhealthyMachineConditions": [
            {"type": "Ready", "status": "False", "timeoutSeconds": 60}]}},
         "must not be one of Ready"),
        ({"checks": {"unhealthyMachineConditions": [
            {"type": "not a type", "status": "False", "timeoutSeconds": 60}]}},
         "should match"),
        ({"checks": {"unhealthyMachineConditions": [
            {"type": "DiskPressureExample", "status": "True", "timeoutSeconds": -1}]}},
         "greater than or equal to 0"),
        ({"checks": {"unhealthyMachineConditions": []}}, "should have at least 1 items"),
    ],
    ids=["percent-over-100", "not-a-number", "negative", "range-reversed", "range-form",
         "empty-selector", "empty-match-labels", "negative-timeout",
         "machine-condition-status", "machine-condition-forbidden-type",
         "machine-condition-ready", "machine-condition-type-form",
         "machine-condition-negative-timeout", "machine-conditions-empty"],
)  # fmt: skip
async def test_bad_input_is_refused_with_a_readable_message(
    api_client: client.ApiClient, namespace: str, spec: dict[str, Any], message: str
) -> None:
    kube = _kube(api_client)
    with pytest.raises(ApiError) as caught:
        await kube.create(MACHINE_HEALTH_CHECK, namespace=namespace, body=_body("bad", **spec))
    assert caught.value.status == 422
    assert message in caught.value.message


async def test_cluster_name_is_immutable(api_client: client.ApiClient, namespace: str) -> None:
    kube = _kube(api_client)
    await kube.create(MACHINE_HEALTH_CHECK, namespace=namespace, body=_body("hc"))
    with pytest.raises(ApiError) as caught:
        await kube.merge_patch(
            MACHINE_HEALTH_CHECK, namespace=namespace, name="hc",
            patch={"spec": {"clusterName": "other"}},
        )  # fmt: skip
    assert "is immutable" in caught.value.message


async def test_the_example_applies_unchanged(api_client: client.ApiClient, namespace: str) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    assert MachineHealthCheck.from_dict(document).to_dict() == document
    created = await _kube(api_client).create(
        MACHINE_HEALTH_CHECK, namespace=namespace, body=document
    )
    assert created["spec"] == document["spec"]
