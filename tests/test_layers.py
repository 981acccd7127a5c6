"""Imports point down the layers (ARCHITECTURE.md): checked on the source, like import-linter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "controller"

#: package -> packages it must not import
FORBIDDEN = {
    "controller.api": ["controller.runtime", "controller.machinepool", "controller.providers",
                       "controller.workload", "controller.testing", "controller.cli",
                       "controller.app"],
    "controller.runtime": ["controller.machinepool", "controller.machines", "controller.providers",
                           "controller.workload", "controller.cli", "controller.app"],
    "controller.workload": ["controller.machinepool", "controller.machines",
                            "controller.providers", "controller.cli", "controller.app"],
    # The clouds sit below the infrastructure reconciler that drives them.
    "controller.providers": ["controller.machinepool", "controller.machines",
                             "controller.healthcheck", "controller.infrastructure",
                             "controller.shared", "controller.cli", "controller.app"],
    # The shared pieces every controller gets sit below all of them.
    "controller.shared": ["controller.machinepool", "controller.machines",
                          "controller.healthcheck", "controller.infrastructure",
                          "controller.providers", "controller.cli", "controller.app"],
    # The infrastructure reconciler knows clouds only through the protocol and the registry.
    "controller.infrastructure": ["controller.machinepool", "controller.machines",
                                  "controller.healthcheck", "controller.workload",
                                  "controller.providers.aws", "controller.providers.inmemory",
                                  "controller.cli", "controller.app"],
    "controller.machinepool": ["controller.providers", "controller.infrastructure",
                               "controller.machines", "controller.cli", "controller.app"],
    "controller.machines": ["controller.machinepool", "controller.providers",
                            "controller.infrastructure", "controller.cli", "controller.app"],
    "controller.healthcheck": ["controller.machinepool", "controller.machines",
                               "controller.providers", "controller.infrastructure",
                               "controller.cli", "controller.app"],
}  # fmt: skip


def test_one_protocol_and_no_hook_probing() -> None:
    """Each infrastructure module lives in one place (controller.infrastructure, not again in
    controller.providers), and the reconciler reads adapter hooks through the typed
    protocol, never with getattr/hasattr."""
    providers = ROOT / "providers"
    for moved in ("reconciler", "scaling", "capacity", "machines", "setup"):
        assert not (providers / f"{moved}.py").exists(), f"controller/providers/{moved}.py"
    assert not (providers / "aws" / "setup.py").exists()
    for path in sorted((ROOT / "infrastructure").rglob("*.py")):
        tree = ast.parse(path.read_text())
        probes = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
        ]
        assert probes == [], f"{_module_name(path)} probes attributes at lines {probes}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down(package: str) -> None:
    offenders = []
    for path in sorted((ROOT.parent / package.replace(".", "/")).rglob("*.py")):
        for imported in _imports(path):
            for banned in FORBIDDEN[package]:
                if imported == banned or imported.startswith(banned + "."):
                    offenders.append(f"{_module_name(path)} imports {imported}")
    assert offenders == []


def _module_graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it imports anywhere (also under TYPE_CHECKING
    and inside functions: a circle hidden there is a circle all the same)."""
    paths = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in paths else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {module for module in found if module in paths and module != name}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    # The REST client once imported the priority policy, which imported the informer, which
    # imports the client; the client now offers a write hook instead (issue #15).
    graph = _module_graph()
    circles = []
    for start in sorted(graph):
        seen: set[str] = set()
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        while stack:
            module, path = stack.pop()
            for imported in sorted(graph[module]):
                if imported == start:
                    circles.append(" -> ".join((*path, start)))
                elif imported not in seen:
                    seen.add(imported)
                    stack.append((imported, (*path, imported)))
    assert circles == []
