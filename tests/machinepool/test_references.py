"""A MachinePool's references reach only what a pool may own (issue #14, §3), on the real API
server with the whole product and the in-memory cloud (:func:`tests.machines._env.running_product`).

- A pool naming another pool's infra pool is refused (``AlreadyOwned``), writes nothing to
  it, and its deletion leaves that infra pool and its cloud group alone.
- A reference to a kind whose CRD lacks the Cluster API contract label, or to a labelled kind
  of another role (a MachinePool), is refused (``InvalidInfrastructureRef`` /
  ``InvalidConfigRef``): the object gets no owner reference and no label, and survives the
  pool's deletion. A labelled kind outside Cluster API's domain is accepted, as the contract
  allows.

The CRDs are made by each test with names of its own and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from controller.api.kinds import IN_MEMORY_MACHINE_POOL, MACHINE_POOL
from controller.runtime.crds import CRDS
from controller.runtime.kube import ApiError, KubeClient, Resource, ResourceLike
from controller.runtime.store import Obj
from controller.testing import ControlPlane
from controller.testing.scenario import machine_pool_body
from controller.testing.waiting import until
from tests.machines._env import Env, converge, running_product

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def env(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> AsyncIterator[Env]:
    async with running_product(
        control_plane=control_plane, api_client=api_client, namespace=namespace
    ) as environment:
        yield environment


def _cond(obj: Obj, type_: str) -> Obj | None:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c.get("type") == type_), None)


async def _gone(kube: KubeClient, resource: ResourceLike, namespace: str, name: str) -> bool:
    try:
        await kube.get(resource, namespace=namespace, name=name)
    except ApiError as exc:
        return exc.not_found
    return False


async def _reason(env: Env, pool: str, type_: str) -> str | None:
    obj = await env.kube.get(MACHINE_POOL, namespace=env.namespace, name=pool)
    cond = _cond(obj, type_)
    return None if cond is None else str(cond.get("reason"))


def _pool_body(name: str, **template_spec: Any) -> Obj:
    body = machine_pool_body(name=name, cluster="c1", replicas=1)
    body["spec"]["template"]["spec"].update(template_spec)
    return body


@contextlib.asynccontextmanager
async def _crd(
    kube: KubeClient, *, group: str, labels: dict[str, str], version: str = "v1alpha1"
) -> AsyncIterator[Resource]:
    """A namespaced CRD of a fresh kind in ``group`` with ``labels``, served once yielded."""
    suffix = uuid.uuid4().hex[:8]
    kind, plural = f"Widget{suffix}", f"widget{suffix}s"
    resource = Resource(group=group, version=version, plural=plural, kind=kind)
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    await kube.create(
        CRDS,
        body={
            "metadata": {"name": f"{plural}.{group}", "labels": labels},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": plural[:-1], "kind": kind,
                          "listKind": f"{kind}List"},
                "versions": [{"name": version, "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": schema},
                              "subresources": {"status": {}}}],
            },
        },
    )  # fmt: skip

    async def served() -> bool:
        try:
            listing = await kube.request(method="GET", path=f"/apis/{group}/{version}")
        except ApiError:
            return False
        return any(r.get("name") == plural for r in listing.get("resources", []))

    try:
        await until(served, what=f"{kind} to be served")
        yield resource
    finally:
        with contextlib.suppress(ApiError):
            await kube.delete(CRDS, name=f"{plural}.{group}")


async def test_a_pool_naming_another_pools_infra_pool_cannot_take_or_delete_it(env: Env) -> None:
    await env.create_pool(replicas=2)  # pool A: p1 with its InMemoryMachinePool p1
    await converge(env, 2)
    pool_a = await env.pool_obj()
    instances = sorted(i.provider_id for i in env.instances())
    infra_before = await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")

    # Pool B names A's infra pool.
    await env.kube.create(
        MACHINE_POOL,
        namespace=env.namespace,
        body=_pool_body("b", infrastructureRef={"apiGroup": "infrastructure.cluster.x-k8s.io",
                                                "kind": "InMemoryMachinePool", "name": "p1"}),
    )  # fmt: skip

    async def refused() -> bool:
        return await _reason(env, "b", "InfrastructureReady") == "AlreadyOwned"

    await until(refused, what="pool B's InfrastructureReady=False AlreadyOwned", timeout=30)
    pool_b = await env.kube.get(MACHINE_POOL, namespace=env.namespace, name="b")
    cond = _cond(pool_b, "InfrastructureReady")
    assert cond is not None
    assert cond["status"] == "False"
    assert "MachinePool p1" in cond["message"]
    assert not pool_b["spec"].get("providerIDList"), "B read A's contract"
    infra = await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")
    controllers = [r for r in infra["metadata"]["ownerReferences"] if r.get("controller")]
    assert [(r["name"], r["uid"]) for r in controllers] == [("p1", pool_a["metadata"]["uid"])]
    assert infra["metadata"]["ownerReferences"] == infra_before["metadata"]["ownerReferences"]

    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="b")

    async def b_gone() -> bool:
        return await _gone(env.kube, MACHINE_POOL, env.namespace, "b")

    await until(b_gone, what="pool B to be deleted", timeout=30)
    infra = await env.kube.get(IN_MEMORY_MACHINE_POOL, namespace=env.namespace, name="p1")
    assert not infra["metadata"].get("deletionTimestamp"), "B's deletion deleted A's infra pool"
    assert infra["metadata"]["uid"] == infra_before["metadata"]["uid"]
    assert env.simulator.inspect(name=env.group) is not None, "A's cloud group is gone"
    await converge(env, 2)
    assert sorted(i.provider_id for i in env.instances()) == instances


CONTRACT = {"cluster.x-k8s.io/v1beta2": "v1alpha1"}


@pytest.mark.parametrize(
    ("group", "labels", "field", "condition", "reason"),
    [
        ("notinfra.example.com", {}, "infrastructureRef", "InfrastructureReady",
         "InvalidInfrastructureRef"),
        ("infrastructure.cluster.x-k8s.io", {"app": "x"}, "infrastructureRef",
         "InfrastructureReady", "InvalidInfrastructureRef"),
        ("infrastructure.cluster.x-k8s.io", {"cluster.x-k8s.io/v1beta2": ""},
         "infrastructureRef", "InfrastructureReady", "InvalidInfrastructureRef"),
        ("bootstrap.cluster.x-k8s.io", {}, "configRef", "BootstrapConfigReady",
         "InvalidConfigRef"),
        # A contract kind, but of the other role: a bootstrap kind is no infra pool.
        ("bootstrap.cluster.x-k8s.io", CONTRACT, "infrastructureRef", "InfrastructureReady",
         "InvalidInfrastructureRef"),
    ],
    ids=["unlabelled-foreign-group", "unlabelled-infra-group", "empty-label",
         "unlabelled-bootstrap-kind", "bootstrap-kind-as-infra"],
)  # fmt: skip
async def test_a_ref_to_a_kind_that_is_not_a_contract_kind_for_its_role_is_refused(
    env: Env, group: str, labels: dict[str, str], field: str, condition: str, reason: str
) -> None:
    async with _crd(env.kube, group=group, labels=labels) as widget:
        await env.kube.create(widget, namespace=env.namespace, body={"metadata": {"name": "w"}})
        ref = {"apiGroup": group, "kind": widget.kind, "name": "w"}
        if field == "configRef":
            spec: dict[str, Any] = {"bootstrap": {"configRef": ref}}
        else:
            spec = {"infrastructureRef": ref}
        await env.kube.create(MACHINE_POOL, namespace=env.namespace, body=_pool_body("x", **spec))

        async def refused() -> bool:
            return await _reason(env, "x", condition) == reason

        await until(refused, what=f"{condition}={reason}", timeout=30)
        pool = await env.kube.get(MACHINE_POOL, namespace=env.namespace, name="x")
        cond = _cond(pool, condition)
        assert cond is not None
        assert cond["status"] == "False"
        assert widget.kind in cond["message"]
        assert "Cluster API" in cond["message"], cond["message"]
        obj = await env.kube.get(widget, namespace=env.namespace, name="w")
        assert not obj["metadata"].get("ownerReferences")
        assert "cluster.x-k8s.io/cluster-name" not in (obj["metadata"].get("labels") or {})

        await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="x")

        async def gone() -> bool:
            return await _gone(env.kube, MACHINE_POOL, env.namespace, "x")

        await until(gone, what="the pool to be deleted", timeout=30)
        obj = await env.kube.get(widget, namespace=env.namespace, name="w")
        assert not obj["metadata"].get("deletionTimestamp"), "the refused object was deleted"


async def test_a_machinepool_named_as_infrastructure_is_refused(env: Env) -> None:
    """Cluster API's own kinds carry the contract label too; a pool cannot own one."""
    await env.create_pool(replicas=1)
    await converge(env, 1)
    before = await env.pool_obj()
    await env.kube.create(
        MACHINE_POOL,
        namespace=env.namespace,
        body=_pool_body("x", infrastructureRef={"apiGroup": "cluster.x-k8s.io",
                                                "kind": "MachinePool", "name": "p1"}),
    )  # fmt: skip

    async def refused() -> bool:
        return await _reason(env, "x", "InfrastructureReady") == "InvalidInfrastructureRef"

    await until(refused, what="InfrastructureReady=InvalidInfrastructureRef", timeout=30)
    after = await env.pool_obj()
    assert after["metadata"].get("ownerReferences") == before["metadata"].get("ownerReferences")
    await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="x")

    async def gone() -> bool:
        return await _gone(env.kube, MACHINE_POOL, env.namespace, "x")

    await until(gone, what="the pool to be deleted", timeout=30)
    assert not (await env.pool_obj())["metadata"].get("deletionTimestamp")
    await converge(env, 1)


async def test_a_labelled_kind_outside_cluster_apis_domain_is_adopted(env: Env) -> None:
    """As the contract allows (``infrastructure.foo.com``): the label, not the group, decides;
    the version read is the label's newest."""
    group = "infrastructure.example.com"
    labels = {"cluster.x-k8s.io/v1beta2": "v1alpha1_v1beta1"}
    async with _crd(env.kube, group=group, labels=labels, version="v1beta1") as widget:
        await env.kube.create(widget, namespace=env.namespace, body={"metadata": {"name": "w"}})
        ref = {"apiGroup": group, "kind": widget.kind, "name": "w"}
        await env.kube.create(
            MACHINE_POOL, namespace=env.namespace, body=_pool_body("x", infrastructureRef=ref)
        )
        pool_uid = (await env.kube.get(MACHINE_POOL, namespace=env.namespace, name="x"))[
            "metadata"
        ]["uid"]

        async def adopted() -> bool:
            obj = await env.kube.get(widget, namespace=env.namespace, name="w")
            return [r.get("uid") for r in obj["metadata"].get("ownerReferences") or []] == [
                pool_uid
            ]

        await until(adopted, what="the labelled object to be adopted", timeout=30)
        assert await _reason(env, "x", "InfrastructureReady") == "WaitingForInfrastructure"
        await env.kube.delete(MACHINE_POOL, namespace=env.namespace, name="x")

        async def deleted() -> bool:
            return await _gone(env.kube, widget, env.namespace, "w")

        await until(deleted, what="the owned object to be deleted with its pool", timeout=30)
