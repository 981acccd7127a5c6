"""Fixtures of the chart tests: helm, built from its Go module once per version.

Tests that use helm are marked ``integration`` (like those that use the control plane), so
``make test-unit`` (``pytest -m "not integration"``) needs neither Go nor the binaries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from tests.chart.helm import Helm, build_helm


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"helm", "helm_binary"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def helm_binary() -> Path:
    try:
        return await build_helm()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def helm(helm_binary: Path, tmp_path: Path) -> Helm:
    home = tmp_path / "helm-home"
    home.mkdir()
    return Helm(binary=helm_binary, home=home)
