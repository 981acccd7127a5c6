"""Shared fixtures: one real control plane per test session, a fresh namespace per test.

Any test that uses ``control_plane`` (directly or through ``api_client``/``namespace``) is
marked ``integration`` automatically, so ``pytest -m "not integration"`` runs without the
binaries.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.kube import NAMESPACES, KubeClient, RestMetrics
from controller.testing import ControlPlane

_INTEGRATION_FIXTURES = {
    "control_plane", "api_client", "namespace", "kubeconfig_path", "two_more_namespaces",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def control_plane() -> AsyncIterator[ControlPlane]:
    async with ControlPlane() as cp:
        yield cp


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_client(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    async with control_plane.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def kubeconfig_path(control_plane: ControlPlane) -> str:
    return str(control_plane.kubeconfig_path)


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(api_client: client.ApiClient) -> AsyncIterator[str]:
    """A namespace of its own for one test.

    The local control plane runs no namespace controller, so a deleted namespace stays
    Terminating with its objects; names are unique so that never matters to a later test.
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    await kube.create(NAMESPACES, body={"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACES, name=name)


@pytest_asyncio.fixture(loop_scope="session")
async def two_more_namespaces(api_client: client.ApiClient) -> AsyncIterator[tuple[str, str]]:
    """Two more namespaces of their own, for tests that watch several (or one and not another)."""
    kube = KubeClient(api=api_client, metrics=RestMetrics(registry=CollectorRegistry()))
    names = (f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}")
    for name in names:
        await kube.create(NAMESPACES, body={"metadata": {"name": name}})
    yield names
    for name in names:
        await kube.delete(NAMESPACES, name=name)
