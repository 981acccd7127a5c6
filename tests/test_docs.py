"""The docs keep up with the code: every flag of ``run``, every chart value, every exported
metric and alert, and every condition reason, Event reason and provider error code the code
sets is documented; every relative link in the docs and README resolves."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from controller.options import add_run_arguments
from tests.chart.test_metric_references import exported_metric_names

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHART = ROOT / "charts" / "machinepool-controller"

_REASON_PATTERNS = [
    r'reason="([A-Za-z]+)"',
    r'reason=[^,\n]*\belse "([A-Za-z]+)"',
    r'_set_ready\(\s*[^)]*?"([A-Z][A-Za-z]+)"',
    r'reason, message = \(\s*"([A-Za-z]+)"',
    r'event\(\s*"(?:Normal|Warning)",\s*"([A-Za-z]+)"',
    r'failure_reason or "([A-Za-z]+)"',
    r'Verdict\(\s*(?:True|False),\s*"([A-Za-z]+)"',
    r'set_\(\s*"[A-Za-z]+",\s*"(?:True|False|Unknown)",\s*"([A-Za-z]+)"',
    r'_event\(\s*\w+,\s*"(?:Normal|Warning)",\s*"([A-Za-z]+)"',
]


def _doc(name: str) -> str:
    return (DOCS / name).read_text()


def _mentioned(text: str, word: str) -> bool:
    return f"`{word}`" in text


def test_every_run_flag_is_in_the_configuration_reference() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    assert "--leader-elect" in flags
    flags.remove("--help")
    text = _doc("configuration.md")
    missing = [f for f in flags if not _mentioned(text, f)]
    assert not missing, f"docs/configuration.md lacks {missing}"


def _value_paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the chart's values, down to values that are free-form or scalars."""
    paths = []
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "properties" in sub and key not in {"resources"}:
            paths += _value_paths(sub, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_every_chart_value_is_in_the_configuration_reference() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    paths = [p for p in _value_paths(schema) if p != "global"]
    assert "leaderElection.leaseDuration" in paths
    assert "serviceAccount.workloadIdentity.awsRoleArn" in paths
    text = _doc("configuration.md")
    missing = [p for p in paths if not _mentioned(text, p)]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_metric_and_alert_is_in_the_metrics_reference() -> None:
    text = _doc("metrics.md")
    missing = [m for m in sorted(exported_metric_names()) if not _mentioned(text, m)]
    assert not missing, f"docs/metrics.md lacks {missing}"
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) >= 4
    missing = [a for a in alerts if not _mentioned(text, a)]
    assert not missing, f"docs/metrics.md lacks alerts {missing}"


def reasons_in_code() -> set[str]:
    """Condition reasons, Event reasons and provider error codes the controller sets."""
    found: set[str] = set()
    sources = [*(ROOT / "controller" / "machinepool").glob("*.py"),
               *(ROOT / "controller" / "healthcheck").glob("*.py"),
               *(ROOT / "controller" / "workload").glob("*.py"),
               *(ROOT / "controller" / "infrastructure").glob("*.py")]  # fmt: skip
    for path in sources:
        text = path.read_text()
        for pattern in _REASON_PATTERNS:
            found.update(re.findall(pattern, text))
    for path in (ROOT / "controller" / "providers").rglob("*.py"):
        found.update(re.findall(r'code="([A-Za-z]+)"', path.read_text()))
    return found


def test_every_reason_the_code_sets_is_in_troubleshooting() -> None:
    reasons = reasons_in_code()
    for known in ("WaitingForNodes", "ReplicasOutOfRange", "InfrastructureNotReady",
                  "WorkloadClusterNotConnected", "NodeDeleted", "Throttling",
                  "UnhealthyMachine", "TooManyUnhealthy", "MachineMarkedUnhealthy",
                  "TemplateChanged"):  # fmt: skip
        assert known in reasons, f"the reason extraction misses {known}"
    text = _doc("troubleshooting.md")
    missing = sorted(r for r in reasons if not _mentioned(text, r))
    assert not missing, f"docs/troubleshooting.md lacks {missing}"


def test_links_resolve_and_the_readme_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("install.md", "configuration.md", "api-compatibility.md", "metrics.md",
                 "providers.md", "troubleshooting.md"):  # fmt: skip
        assert f"docs/{name}" in readme, f"README.md does not link docs/{name}"
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links {target}, which is missing"
