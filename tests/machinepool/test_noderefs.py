"""The one Node patch of noderefs (owner annotations + the uninitialized taint) against the
real API server: what it changes, what it leaves, and that a concurrent write to what it
relies on makes it fail whole instead of dropping someone else's taint or annotation."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.machinepool.noderefs import UNINITIALIZED_TAINT, node_patch
from controller.runtime.kube import NODES, ApiError, KubeClient, RestMetrics

Obj = dict[str, Any]

OURS = {"key": UNINITIALIZED_TAINT, "effect": "NoSchedule"}
OTHER = {"key": "node.cloudprovider.kubernetes.io/uninitialized", "effect": "NoSchedule",
         "value": "true"}  # fmt: skip
WANTED = {
    "cluster.x-k8s.io/cluster-name": "c1",
    "cluster.x-k8s.io/cluster-namespace": "ns",
    "cluster.x-k8s.io/owner-kind": "MachinePool",
    "cluster.x-k8s.io/owner-name": "p1",
}


@pytest_asyncio.fixture(loop_scope="session")
async def kube(api_client: client.ApiClient) -> AsyncIterator[KubeClient]:
    yield KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))


@pytest_asyncio.fixture(loop_scope="session")
async def node_name(kube: KubeClient) -> AsyncIterator[str]:
    name = f"np-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        await kube.delete(NODES, name=name)
    except ApiError as exc:
        if not exc.not_found:
            raise


async def _node(
    kube: KubeClient, *, name: str, taints: list[Obj], annotations: dict[str, str] | None = None
) -> Obj:
    meta: Obj = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return await kube.create(
        NODES, body={"metadata": meta, "spec": {"providerID": f"x:///{name}", "taints": taints}}
    )


def _taints(node: Obj) -> list[Obj]:
    """The Node's taints but the API server's own (admission adds ``not-ready`` on create)."""
    taints = (node.get("spec") or {}).get("taints") or []
    return [t for t in taints if not t["key"].startswith("node.kubernetes.io/")]


async def test_one_patch_annotates_and_removes_only_our_taint(
    kube: KubeClient, node_name: str
) -> None:
    cached = await _node(kube, name=node_name, taints=[OTHER, OURS])
    # A kubelet status write moves the resourceVersion; the patch does not depend on it.
    await kube.merge_patch(NODES, name=node_name, subresource="status",
                           patch={"status": {"capacity": {"cpu": "2"}}})  # fmt: skip
    ops = node_patch(node=cached, annotations=WANTED)
    patched = await kube.json_patch(NODES, name=node_name, ops=ops)
    assert patched["metadata"]["annotations"] == WANTED
    assert _taints(patched) == [OTHER]
    assert node_patch(node=patched, annotations=WANTED) == []


async def test_existing_annotations_are_kept_and_only_changed_keys_written(
    kube: KubeClient, node_name: str
) -> None:
    theirs = {"example.com/theirs": "kept", "cluster.x-k8s.io/owner-name": "old"}
    cached = await _node(kube, name=node_name, taints=[], annotations=theirs)
    await kube.merge_patch(NODES, name=node_name,
                           patch={"metadata": {"annotations": {"late": "1"}}})  # fmt: skip
    ops = node_patch(node=cached, annotations=WANTED)
    assert [op["op"] for op in ops] == ["add"] * 4
    patched = await kube.json_patch(NODES, name=node_name, ops=ops)
    assert patched["metadata"]["annotations"] == {
        **WANTED, "example.com/theirs": "kept", "late": "1"
    }  # fmt: skip
    assert node_patch(node=patched, annotations=WANTED) == []


async def test_annotations_added_concurrently_fail_the_patch_whole(
    kube: KubeClient, node_name: str
) -> None:
    cached = await _node(kube, name=node_name, taints=[OURS])
    await kube.merge_patch(NODES, name=node_name,
                           patch={"metadata": {"annotations": {"theirs": "x"}}})  # fmt: skip
    with pytest.raises(ApiError) as caught:
        await kube.json_patch(NODES, name=node_name,
                              ops=node_patch(node=cached, annotations=WANTED))  # fmt: skip
    assert caught.value.status == 422
    live = await kube.get(NODES, name=node_name)
    assert live["metadata"]["annotations"] == {"theirs": "x"}
    assert _taints(live) == [OURS]
    # The retry, from the newer copy, keeps theirs.
    patched = await kube.json_patch(NODES, name=node_name,
                                    ops=node_patch(node=live, annotations=WANTED))  # fmt: skip
    assert patched["metadata"]["annotations"] == {**WANTED, "theirs": "x"}
    assert _taints(patched) == []


async def test_taints_moved_concurrently_fail_the_patch_and_lose_no_taint(
    kube: KubeClient, node_name: str
) -> None:
    cached = await _node(kube, name=node_name, taints=[OURS, OTHER])
    # Another controller puts a taint in front: ours is no longer at index 0.
    live = copy.deepcopy(cached)
    new = {"key": "example.com/maintenance", "effect": "NoExecute"}
    await kube.json_patch(NODES, name=node_name,
                          ops=[{"op": "add", "path": "/spec/taints/0", "value": new}])  # fmt: skip
    with pytest.raises(ApiError) as caught:
        await kube.json_patch(NODES, name=node_name,
                              ops=node_patch(node=live, annotations=WANTED))  # fmt: skip
    assert caught.value.status == 422
    live = await kube.get(NODES, name=node_name)
    assert _taints(live) == [new, OURS, OTHER]
    assert not live["metadata"].get("annotations")
    patched = await kube.json_patch(NODES, name=node_name,
                                    ops=node_patch(node=live, annotations=WANTED))  # fmt: skip
    assert _taints(patched) == [new, OTHER]
    assert patched["metadata"]["annotations"] == WANTED


def test_nothing_to_do_is_no_patch() -> None:
    node: Obj = {"metadata": {"name": "n", "annotations": dict(WANTED)}, "spec": {}}
    assert node_patch(node=node, annotations=WANTED) == []
    node["spec"]["taints"] = [OTHER]
    assert node_patch(node=node, annotations=WANTED) == []
    node["spec"]["taints"] = [OTHER, OURS]
    assert node_patch(node=node, annotations=WANTED) == [
        {"op": "test", "path": "/spec/taints/1", "value": OURS},
        {"op": "remove", "path": "/spec/taints/1"},
    ]
