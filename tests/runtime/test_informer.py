"""Informers against the real API server: sync, ordered events, and recovery from a broken
watch: a restarted API server, an expired resourceVersion (410) after etcd compaction with a
delete in the gap, and a half-open connection caught by the inactivity timeout. One informer
over several namespaces fills one store from those namespaces only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.kube import KubeClient, Resource, RestMetrics
from controller.runtime.store import by_label
from controller.testing import ControlPlane
from controller.testing.proxy import TcpProxy
from controller.testing.waiting import until

CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap")


def _kube(api: client.ApiClient) -> KubeClient:
    return KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))


class Recorder:
    """Collects events and lets a test await a condition on them."""

    def __init__(self) -> None:
        self.events: list[InformerEvent] = []
        self._changed = asyncio.Condition()

    def __call__(self, event: InformerEvent) -> None:
        self.events.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[InformerEvent]], bool]) -> None:
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(lambda: predicate(self.events))

    def seen(self, kind: str, name: str) -> bool:
        return any(e.type == kind and e.obj["metadata"]["name"] == name for e in self.events)


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(30):
            await informer.wait_for_sync()
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _make_cm(kube: KubeClient, ns: str, name: str, **data: str) -> None:
    await kube.create(CONFIGMAPS, namespace=ns, body={"metadata": {"name": name}, "data": data})


async def test_sync_then_events_in_order(api_client: client.ApiClient, namespace: str) -> None:
    kube = _kube(api_client)
    for name in ("a", "b", "c"):
        await _make_cm(kube, namespace, name)
    rec = Recorder()
    informer = Informer(kube=kube, resource=CONFIGMAPS, namespace=namespace)
    informer.add_handler(rec)
    async with running(informer):
        assert sorted(informer.store) == [f"{namespace}/{n}" for n in ("a", "b", "c")]
        assert {(e.type, e.initial) for e in rec.events} == {("ADDED", True)}
        assert all("managedFields" not in o["metadata"] for o in informer.store.values())

        await _make_cm(kube, namespace, "d")
        await kube.merge_patch(
            CONFIGMAPS, namespace=namespace, name="d", patch={"data": {"x": "1"}}
        )
        await kube.delete(CONFIGMAPS, namespace=namespace, name="d")
        await rec.wait_for(lambda evs: any(e.type == "DELETED" for e in evs))
    live = [(e.type, e.initial) for e in rec.events if e.obj["metadata"]["name"] == "d"]
    assert live == [("ADDED", False), ("MODIFIED", False), ("DELETED", False)]
    modified = next(e for e in rec.events if e.type == "MODIFIED")
    assert modified.old is not None
    assert modified.obj["data"] == {"x": "1"}


async def test_large_objects_stream_through_the_watch(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = _kube(api_client)
    rec = Recorder()
    informer = Informer(kube=kube, resource=CONFIGMAPS, namespace=namespace)
    informer.add_handler(rec)
    async with running(informer):
        await _make_cm(kube, namespace, "big", blob="x" * 600_000)
        await rec.wait_for(lambda evs: any(e.type == "ADDED" for e in evs))
    assert len(informer.store.get(f"{namespace}/big")["data"]["blob"]) == 600_000  # type: ignore[index]


@pytest_asyncio.fixture(loop_scope="session")
async def private_plane() -> AsyncIterator[ControlPlane]:
    """A control plane of its own, since these tests restart and compact it."""
    async with ControlPlane(install_crds=False) as cp:
        yield cp


@contextlib.asynccontextmanager
async def proxied_kube(cp: ControlPlane) -> AsyncIterator[tuple[KubeClient, TcpProxy]]:
    async with TcpProxy(upstream_port=cp.apiserver_port) as proxy:
        cfg = cp.client_configuration()
        cfg.host = f"https://127.0.0.1:{proxy.port}"
        async with client.ApiClient(configuration=cfg) as api:
            yield _kube(api), proxy


async def test_recovers_after_apiserver_restart(private_plane: ControlPlane) -> None:
    cp = private_plane
    async with cp.api_client() as admin_api:
        admin = _kube(admin_api)
        await _make_cm(admin, "default", "before")
        rec = Recorder()
        informer = Informer(
            kube=admin, resource=CONFIGMAPS, namespace="default", backoff_initial=0.1
        )
        informer.add_handler(rec)
        async with running(informer):
            await cp.kill_apiserver()
            await cp.start_apiserver()
            # A fresh client: the old one's pooled connections died with the server.
            async with cp.api_client() as fresh:
                await _make_cm(_kube(fresh), "default", "after")
            await rec.wait_for(lambda _: rec.seen("ADDED", "after"))
        assert informer.watches >= 2


async def test_delete_during_a_410_gap_is_delivered(private_plane: ControlPlane) -> None:
    """The watch is cut off, an object is deleted, etcd is compacted and the API server
    restarted (its watch cache forgets old versions): the resumed watch gets 410, the
    informer relists, and the delete it missed arrives with state_unknown."""
    cp = private_plane
    async with cp.api_client() as admin_api, proxied_kube(cp) as (kube, proxy):
        admin = _kube(admin_api)
        await _make_cm(admin, "default", "doomed")
        await _make_cm(admin, "default", "stays")
        rec = Recorder()
        informer = Informer(
            kube=kube, resource=CONFIGMAPS, namespace="default", backoff_initial=0.1
        )
        informer.add_handler(rec)
        async with running(informer):
            lists_before = informer.lists
            proxy.refuse()
            proxy.cut()
            await admin.delete(CONFIGMAPS, namespace="default", name="doomed")
            for i in range(5):
                await _make_cm(admin, "default", f"churn-{i}")
            await cp.compact_etcd()
            await cp.restart_apiserver()
            proxy.accept()
            async with cp.api_client() as fresh:
                await _make_cm(_kube(fresh), "default", "churn-5")
            await rec.wait_for(lambda _: rec.seen("DELETED", "doomed"))
            deleted = next(e for e in rec.events if e.type == "DELETED")
            assert deleted.state_unknown
            assert informer.lists == lists_before + 1
            assert "default/doomed" not in informer.store
            assert "default/stays" in informer.store
            await rec.wait_for(lambda _: rec.seen("ADDED", "churn-5"))


async def test_half_open_watch_is_abandoned_after_inactivity(private_plane: ControlPlane) -> None:
    cp = private_plane
    async with cp.api_client() as admin_api, proxied_kube(cp) as (kube, proxy):
        admin = _kube(admin_api)
        rec = Recorder()
        informer = Informer(
            kube=kube,
            resource=CONFIGMAPS,
            namespace="kube-system",
            inactivity_timeout=1.5,
            backoff_initial=0.1,
        )
        informer.add_handler(rec)
        async with running(informer):
            accepted = proxy.connections_accepted
            proxy.blackhole()
            # The stalled watch gives up after the inactivity timeout and reconnects.
            await until(lambda: informer.watches >= 2, timeout=10, what="a second watch")
            proxy.heal()
            await _make_cm(admin, "kube-system", "after-stall")
            await rec.wait_for(lambda _: rec.seen("ADDED", "after-stall"))
            assert proxy.connections_accepted >= accepted


@pytest.mark.parametrize("handler_fails", [True])
async def test_a_failing_handler_does_not_stop_the_informer(
    api_client: client.ApiClient, namespace: str, handler_fails: bool
) -> None:
    kube = _kube(api_client)
    rec = Recorder()

    def broken(_: InformerEvent) -> None:
        raise RuntimeError("handler bug")

    informer = Informer(kube=kube, resource=CONFIGMAPS, namespace=namespace)
    informer.add_handler(broken)
    informer.add_handler(rec)
    async with running(informer):
        await _make_cm(kube, namespace, "x")
        await rec.wait_for(lambda _: rec.seen("ADDED", "x"))


async def test_several_namespaces_share_one_store_and_ignore_the_others(
    api_client: client.ApiClient, namespace: str, two_more_namespaces: tuple[str, str]
) -> None:
    kube = _kube(api_client)
    a, (b, outside) = namespace, two_more_namespaces
    for ns in (a, b, outside):
        await kube.create(
            CONFIGMAPS, namespace=ns,
            body={"metadata": {"name": "x", "labels": {"team": "t"}}, "data": {}},
        )  # fmt: skip
    informer = Informer(kube=kube, resource=CONFIGMAPS, namespace=(b, a, a))
    informer.store.add_index(name="team", func=by_label("team"))
    recorder = Recorder()
    informer.add_handler(recorder)
    async with running(informer):
        # One informer, one store keyed namespace/name, indexes across both namespaces.
        assert informer.namespace == tuple(sorted((a, b)))
        assert f"{a}/x" in informer.store
        assert f"{b}/x" in informer.store
        assert f"{outside}/x" not in informer.store
        assert {o["metadata"]["namespace"] for o in informer.store.by_index(
            name="team", value="t")} == {a, b}  # fmt: skip
        # Changes in the unwatched namespace never arrive; those in both watched ones do.
        await _make_cm(kube, outside, "late")
        await _make_cm(kube, b, "late")
        await kube.delete(CONFIGMAPS, namespace=a, name="x")
        await recorder.wait_for(
            lambda evs: (
                any(e.type == "ADDED" and e.key == f"{b}/late" for e in evs)
                and any(e.type == "DELETED" and e.key == f"{a}/x" for e in evs)
            )
        )
        assert not [e for e in recorder.events if e.obj["metadata"]["namespace"] == outside]
        assert f"{b}/x" in informer.store  # the other namespace's object is untouched
        assert informer.lists == 2  # one LIST per namespace
