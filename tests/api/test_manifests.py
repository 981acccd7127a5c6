"""Manifests written for Cluster API v1beta2 parse into typed models with the right meaning."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from controller.api import Cluster, InMemoryMachinePool, Machine, MachinePool, model_for
from controller.api.kinds import ALL_KINDS
from tests.api import manifests

_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_capi_machine_pool_with_secret_bootstrap_and_in_memory_infrastructure() -> None:
    pool = MachinePool.from_dict(manifests.machine_pool())

    assert pool.name == "workers"
    assert pool.namespace == "default"
    assert pool.metadata.generation == 3
    assert pool.metadata.finalizers == ["machinepool.cluster.x-k8s.io"]
    assert pool.metadata.owner_references[0].kind == "Cluster"
    assert pool.spec.cluster_name == "demo"
    assert pool.spec.replicas == 3
    template = pool.spec.template.spec
    assert template.bootstrap.data_secret_name == "workers-bootstrap"
    assert template.bootstrap.config_ref is None
    assert template.infrastructure_ref.api_group == "infrastructure.cluster.x-k8s.io"
    assert template.infrastructure_ref.kind == "InMemoryMachinePool"
    assert template.min_ready_seconds == 30
    assert template.deletion.node_deletion_timeout_seconds == 10
    assert template.readiness_gates[0].condition_type == "example.com/Ready"
    assert pool.spec.template.metadata.labels == {"nodepool": "workers"}
    assert len(pool.spec.provider_id_list) == 3
    assert pool.spec.failure_domains == ["zone-a", "zone-b"]


def test_capi_machine_pool_status_including_deprecated_v1beta1_fields() -> None:
    status = MachinePool.from_dict(manifests.machine_pool()).status

    assert status.initialization.infrastructure_provisioned is True
    assert status.initialization.bootstrap_data_secret_created is True
    assert (status.replicas, status.ready_replicas, status.available_replicas) == (3, 2, 2)
    assert status.up_to_date_replicas == 3
    assert status.phase == "ScalingUp"
    assert status.node_refs[0].name == "node-1"
    assert status.versions[0].version == "v1.35.4"
    paused = status.conditions[0]
    assert (paused.type, paused.status, paused.reason) == ("Paused", "False", "NotPaused")
    assert paused.last_transition_time == datetime(2025, 3, 1, 10, 0, 5, tzinfo=UTC)
    old = status.deprecated.v1beta1
    assert (old.ready_replicas, old.available_replicas, old.unavailable_replicas) == (2, 2, 1)
    assert old.conditions[0].severity == "Info"


def test_capi_machine_pool_machine() -> None:
    machine = Machine.from_dict(manifests.machine())

    assert machine.spec.bootstrap.data_secret_name == ""
    assert machine.spec.provider_id == "inmemory:///zone-a/i-0001"
    assert machine.spec.infrastructure_ref.kind == "InMemoryMachine"
    assert machine.metadata.owner_references[0].controller is True
    assert machine.status.node_ref is not None
    assert machine.status.node_ref.name == "node-1"
    assert machine.status.node_info is not None
    assert machine.status.node_info.kubelet_version == "v1.35.4"
    assert machine.status.node_info.model_extra == {"swap": {}}
    assert machine.status.addresses[0].address == "10.0.0.1"


def test_capi_cluster_keeps_what_we_do_not_model() -> None:
    data = manifests.cluster()
    cluster = Cluster.from_dict(data)

    assert cluster.spec.paused is False
    assert cluster.spec.control_plane_ref is not None
    assert cluster.spec.control_plane_ref.kind == "KubeadmControlPlane"
    assert cluster.spec.topology is not None
    assert cluster.spec.topology["classRef"] == {"name": "quick-start"}
    assert cluster.status.initialization.control_plane_initialized is True
    assert cluster.status.phase == "Provisioned"
    assert cluster.spec.model_extra is not None
    assert set(cluster.spec.model_extra) == {"clusterNetwork", "controlPlaneEndpoint"}
    assert cluster.to_dict() == data


def test_in_memory_machine_pool() -> None:
    pool = InMemoryMachinePool.from_dict(manifests.in_memory_machine_pool())

    assert (pool.spec.min_size, pool.spec.max_size) == (1, 10)
    assert pool.spec.delete_policy == "Newest"
    assert pool.spec.template.failure_rate == 0.1
    assert pool.spec.template.zones == ["zone-a", "zone-b"]
    assert pool.spec.strategy is not None
    assert pool.spec.strategy.rolling_update is not None
    assert pool.spec.strategy.rolling_update.max_unavailable == "25%"
    assert pool.status.initialization.provisioned is True
    assert pool.status.infrastructure_machine_kind == "InMemoryMachine"
    assert pool.status.instances[0].instance_id == "i-0001"
    assert pool.status.instances[0].provider_id == "inmemory:///zone-a/i-0001"


def test_every_document_of_the_example_parses_with_its_kind() -> None:
    documents = list(yaml.safe_load_all((_EXAMPLES / "inmemory-machinepool.yaml").read_text()))
    by_api = {(kind.api_version, kind.kind): kind for kind in ALL_KINDS}
    parsed = 0
    for document in documents:
        kind = by_api.get((document["apiVersion"], document["kind"]))
        if kind is None:
            continue  # a core kind such as Secret
        model = model_for(kind)
        assert model.from_dict(document).to_dict() == document
        parsed += 1
    assert parsed == 3
