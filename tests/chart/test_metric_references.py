"""The alerts and the Grafana dashboard use only series that exist: the metric names the
controller's code registers, the kube-state-metrics series the chart's config defines, and
Prometheus's own ``up``. A renamed metric fails here instead of in a silent dashboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.chart.helm import CHART, MONITORING, ROOT, Helm, find
from tests.chart.test_render import ALL_FEATURES

_PREFIXES = ("controller_runtime_", "workqueue_", "rest_client_", "leader_election_",
             "machinepool_", "machinehealthcheck_")  # fmt: skip
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset"}  # fmt: skip


def exported_metric_names() -> set[str]:
    """Metric names written as string literals in the controller's code."""
    names: set[str] = set()
    for path in (ROOT / "controller").rglob("*.py"):
        if "testing" in path.parts:
            continue
        for literal in re.findall(r"\"([a-z_]+)\"", path.read_text()):
            if literal.startswith(_PREFIXES):
                names.add(literal)
    return names


def kube_state_metric_names() -> set[str]:
    config = yaml.safe_load((CHART / "files" / "kube-state-metrics.yaml").read_text())
    return {
        f"{res['metricNamePrefix']}_{metric['name']}"
        for res in config["spec"]["resources"] for metric in res["metrics"]
    }  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (selectors, strings, ranges stripped)."""
    text = re.sub(r"\{[^}]*\}", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _PROMQL_WORDS or name[0].isdigit():
            continue
        found.add(name)
    return found


def _base(name: str) -> str:
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _dashboard_exprs() -> Iterator[str]:
    dashboard: dict[str, Any] = json.loads((CHART / "files" / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield str(target["expr"])


def test_the_code_exports_the_metrics_the_readme_promises() -> None:
    names = exported_metric_names()
    assert "controller_runtime_reconcile_total" in names
    assert "workqueue_depth" in names
    assert "machinepool_provider_requests_total" in names


def test_the_dashboard_reads_only_real_series() -> None:
    known = exported_metric_names() | kube_state_metric_names()
    used = set()
    for expr in _dashboard_exprs():
        names = metric_names_in(expr)
        assert names, expr
        used |= names
    unknown = {n for n in used if _base(n) not in known}
    assert not unknown, f"the dashboard reads series nothing exports: {sorted(unknown)}"


async def test_the_alerts_read_only_real_series(helm: Helm) -> None:
    docs = await helm.render(values=ALL_FEATURES, api_versions=[MONITORING])
    rules = [r for g in find(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    known = exported_metric_names() | kube_state_metric_names() | {"up"}
    for rule in rules:
        names = metric_names_in(rule["expr"])
        assert names, rule["alert"]
        unknown = {n for n in names if _base(n) not in known}
        assert not unknown, f"{rule['alert']} reads series nothing exports: {sorted(unknown)}"
