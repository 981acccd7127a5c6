"""The rendered chart against the real kube-apiserver: every object (CRDs included) passes a
server-side dry-run apply, and ``helm install`` works against the live API server, with the
Prometheus operator's kinds installed only when the cluster serves them (helm reads that
from the server's discovery, as it would on a real cluster)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
import yaml

from tests.chart.helm import CHART, Helm, kubectl, to_yaml
from tests.chart.test_render import ALL_FEATURES

MONITORING_CRDS = Path(__file__).with_name("monitoring-crds.yaml")


@pytest_asyncio.fixture(loop_scope="session")
async def monitoring_crds(kubeconfig_path: str) -> AsyncIterator[None]:
    """monitoring.coreos.com/v1 served for the length of one test."""
    done = await kubectl(
        "apply", "--server-side", "-f", MONITORING_CRDS, kubeconfig=kubeconfig_path
    )
    assert done.code == 0, done.err
    try:
        done = await kubectl(
            "wait", "--for=condition=Established", "--timeout=30s", "-f", MONITORING_CRDS,
            kubeconfig=kubeconfig_path,
        )  # fmt: skip
        assert done.code == 0, done.err
        yield
    finally:
        await kubectl("delete", "--wait=false", "-f", MONITORING_CRDS, kubeconfig=kubeconfig_path)


async def _dry_run(docs: list[dict[str, object]], *, kubeconfig: str) -> list[str]:
    done = await kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=chart-test",
        "-f", "-", kubeconfig=kubeconfig, stdin=to_yaml(docs),
    )  # fmt: skip
    assert done.code == 0, done.err
    return done.out.strip().splitlines()


async def test_defaults_pass_server_side_dry_run(
    helm: Helm, kubeconfig_path: str, namespace: str
) -> None:
    docs = await helm.render(namespace=namespace, include_crds=True)
    assert sum(d["kind"] == "CustomResourceDefinition" for d in docs) == len(
        list((CHART / "crds").glob("*.yaml"))
    )
    lines = await _dry_run(docs, kubeconfig=kubeconfig_path)
    assert len(lines) == len(docs)
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), lines


async def test_every_feature_passes_server_side_dry_run(
    helm: Helm, kubeconfig_path: str, namespace: str, monitoring_crds: None
) -> None:
    docs = await helm.render(
        namespace=namespace, values=ALL_FEATURES, api_versions=["monitoring.coreos.com/v1"],
        include_crds=True,
    )  # fmt: skip
    kinds = {d["kind"] for d in docs}
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    lines = await _dry_run(docs, kubeconfig=kubeconfig_path)
    assert len(lines) == len(docs)


async def _install(
    helm: Helm, *, namespace: str, kubeconfig: str, release: str, values: dict[str, object]
) -> str:
    values_file = helm.home / "install-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = await helm.run(
        "install", release, CHART, "--namespace", namespace, "--kubeconfig", kubeconfig,
        "-f", values_file,
    )  # fmt: skip
    assert done.code == 0, done.err
    return done.out


async def _uninstall(helm: Helm, *, namespace: str, kubeconfig: str, release: str) -> None:
    done = await helm.run(
        "uninstall", release, "--namespace", namespace, "--kubeconfig", kubeconfig
    )
    assert done.code == 0, done.err


async def test_helm_install_without_monitoring_crds_skips_them_and_says_so(
    helm: Helm, kubeconfig_path: str, namespace: str
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    notes = await _install(
        helm, namespace=namespace, kubeconfig=kubeconfig_path, release=release,
        values={"metrics": {"serviceMonitor": {"enabled": True}}},
    )  # fmt: skip
    try:
        assert "STATUS: deployed" in notes
        assert "does not serve\nmonitoring.coreos.com/v1" in notes
        done = await kubectl(
            "get", "deployment,serviceaccount,service,pdb,role,rolebinding", "-n", namespace,
            "-o", "name", kubeconfig=kubeconfig_path,
        )  # fmt: skip
        assert done.code == 0, done.err
        full = f"{release}-machinepool-controller"
        for obj in [f"deployment.apps/{full}", f"serviceaccount/{full}",
                    f"service/{full}-metrics", f"poddisruptionbudget.policy/{full}",
                    f"role.rbac.authorization.k8s.io/{full}-leader-election"]:  # fmt: skip
            assert obj in done.out.split(), done.out
        manifest = await helm.run(
            "get", "manifest", release, "-n", namespace, "--kubeconfig", kubeconfig_path
        )
        assert "kind: ServiceMonitor" not in manifest.out
    finally:
        await _uninstall(helm, namespace=namespace, kubeconfig=kubeconfig_path, release=release)


async def test_helm_install_with_monitoring_crds_installs_monitor_and_rules(
    helm: Helm, kubeconfig_path: str, namespace: str, monitoring_crds: None
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    notes = await _install(
        helm, namespace=namespace, kubeconfig=kubeconfig_path, release=release,
        values=ALL_FEATURES,
    )  # fmt: skip
    try:
        assert "does not serve" not in notes
        done = await kubectl(
            "get", "servicemonitors,prometheusrules,configmaps", "-n", namespace, "-o", "name",
            kubeconfig=kubeconfig_path,
        )  # fmt: skip
        assert done.code == 0, done.err
        full = f"{release}-machinepool-controller"
        for obj in [f"servicemonitor.monitoring.coreos.com/{full}",
                    f"prometheusrule.monitoring.coreos.com/{full}",
                    f"configmap/{full}-dashboard"]:  # fmt: skip
            assert obj in done.out.split(), done.out
    finally:
        await _uninstall(helm, namespace=namespace, kubeconfig=kubeconfig_path, release=release)
