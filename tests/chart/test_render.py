"""``helm template`` of the chart, read as data: what a platform team relies on is there
(security settings, probes, leader election, least-privilege RBAC), optional features
render only when asked for (and, for the Prometheus operator's kinds, only when the cluster
serves them), and wrong values fail at install time with a message naming the field."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

import pytest

from controller.options import RunOptions, add_run_arguments, parse_duration
from tests.chart.helm import CHART, MONITORING, Helm, find, kinds

ALL_FEATURES: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True},
        "readerSubjects": [
            {"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}
        ],
    },
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "provider": {"credentialsSecret": "cloud-credentials"},
    "serviceAccount": {
        "annotations": {"example.com/team": "platform"},
        "workloadIdentity": {"awsRoleArn": "arn:aws:iam::123456789012:role/mpc"},
    },
    "inmemory": {"endpoint": "http://simulator.mpc-system:8090"},
    "extraArgs": ["--leader-elect-retry-period=3s"],
    "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
    "podAnnotations": {"example.com/scrape": "true"},
    "priorityClassName": "system-cluster-critical",
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "machinepool-controller"}},
        }
    ],
    "logging": {"format": "console", "level": "debug"},
}


_NAME = "mpc-machinepool-controller"


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _parse_run_args(args: list[str]) -> RunOptions:
    """The Deployment's args (flags of the image's ``machinepool-controller run``
    entrypoint) as the controller itself parses and checks them."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_run_arguments(parser)
    options = RunOptions.from_args(parser.parse_args(args))
    options.check()
    return options


async def test_defaults_render_a_hardened_two_replica_deployment(helm: Helm) -> None:
    docs = await helm.render()
    assert kinds(docs) == sorted([
        "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role",
        "RoleBinding", "Service", "ServiceAccount",
        # the secure metrics endpoint: metrics-auth (and its binding), metrics-reader
        "ClusterRole", "ClusterRoleBinding", "ClusterRole",
    ])  # fmt: skip
    deployment = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "mpc-machinepool-controller"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(docs)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]

    options = _parse_run_args(container["args"])
    assert options.leader_elect is True
    assert options.leader_election_namespace == "mpc-system"
    assert options.leader_election_id == "mpc-machinepool-controller-leader-election"
    # SIGKILL must not come before the controller's own graceful shutdown is over.
    assert pod["terminationGracePeriodSeconds"] > options.graceful_shutdown_timeout
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert options.metrics_bind_address == f":{ports['metrics']}"
    assert options.health_probe_bind_address == f":{ports['health']}"
    assert options.metrics_secure is True
    assert options.metrics_cert_path is None  # self-signed

    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    service = find(docs, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


async def test_every_feature_on_renders_monitoring_credentials_and_identity(helm: Helm) -> None:
    docs = await helm.render(values=ALL_FEATURES, api_versions=[MONITORING])
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(kinds(docs))
    account = find(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "example.com/team": "platform",
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/mpc",
    }
    container = _container(docs)
    assert container["envFrom"] == [{"secretRef": {"name": "cloud-credentials"}}]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in container["env"]
    options = _parse_run_args(container["args"])
    assert options.inmemory_endpoint == "http://simulator.mpc-system:8090"
    assert options.retry_period == 3.0
    monitor = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    groups = find(docs, "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    assert {
        "MachinePoolControllerReconcileErrors", "MachinePoolControllerQueueBackingUp",
        "MachinePoolNotConverging", "MachinePoolProviderThrottling",
    } <= alerts  # fmt: skip
    dashboard = json.loads(find(docs, "ConfigMap")["data"]["machinepool-controller.json"])
    assert dashboard["uid"] == "machinepool-controller"


async def test_monitoring_kinds_need_the_cluster_to_serve_them(helm: Helm) -> None:
    docs = await helm.render(values=ALL_FEATURES)
    assert "ServiceMonitor" not in kinds(docs)
    assert "PrometheusRule" not in kinds(docs)


async def test_watch_namespace_narrows_rbac_to_a_role(helm: Helm) -> None:
    docs = await helm.render(values={"watchNamespace": "team-a"})
    cluster_roles = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"}
    assert cluster_roles == {  # the secure metrics endpoint, and reading CRDs
        "mpc-machinepool-controller-metrics-auth",
        "mpc-machinepool-controller-metrics-reader",
        "mpc-machinepool-controller-crd-reader",
    }
    # The one cluster-scoped right of the reconcilers: reading CRDs (a reference's contract
    # label).
    reader = find(docs, "ClusterRole", "mpc-machinepool-controller-crd-reader")
    assert reader["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get"]}
    ]  # fmt: skip
    binding = find(docs, "ClusterRoleBinding", "mpc-machinepool-controller-crd-reader")
    assert binding["roleRef"]["name"] == reader["metadata"]["name"]
    role = find(docs, "Role", "mpc-machinepool-controller")
    assert role["metadata"]["namespace"] == "team-a"
    binding = find(docs, "RoleBinding", "mpc-machinepool-controller")
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mpc-machinepool-controller", "namespace": "mpc-system"}
    ]
    assert _parse_run_args(_container(docs)["args"]).namespaces == ("team-a",)


async def test_watch_namespaces_render_a_role_in_each_and_no_cluster_role(helm: Helm) -> None:
    docs = await helm.render(values={"watchNamespaces": ["team-a", "team-b"]})
    # Cluster-scoped: only what the secure metrics endpoint needs, and reading CRDs.
    assert {d["metadata"]["name"] for d in docs if d["kind"].startswith("Cluster")} == {
        f"{_NAME}-metrics-auth", f"{_NAME}-metrics-reader", f"{_NAME}-crd-reader",
    }  # fmt: skip
    cluster_rules = [  # without reading CRDs, which is cluster-scoped (the crd-reader above)
        rule
        for rule in find(await helm.render(), "ClusterRole", _NAME)["rules"]
        if rule["apiGroups"] != ["apiextensions.k8s.io"]
    ]
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == _NAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    # The same rules, each namespace's Role granting there what the ClusterRole grants.
    assert all(r["rules"] == cluster_rules for r in roles)
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == _NAME]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": _NAME,
        }  # fmt: skip
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": _NAME, "namespace": "mpc-system"}
        ]
    # The Lease Role stays in the release namespace, whatever is watched.
    lease = find(docs, "Role", f"{_NAME}-leader-election")
    assert lease["metadata"]["namespace"] == "mpc-system"
    assert _parse_run_args(_container(docs)["args"]).namespaces == ("team-a", "team-b")
    # The older single value joins the list.
    docs = await helm.render(values={"watchNamespaces": ["team-a"], "watchNamespace": "team-c"})
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == _NAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-c"]
    assert _parse_run_args(_container(docs)["args"]).namespaces == ("team-a", "team-c")


async def test_rbac_is_least_privilege(helm: Helm) -> None:
    docs = await helm.render()
    rules = find(docs, "ClusterRole", "mpc-machinepool-controller")["rules"]
    verbs = {
        (group, resource): set(rule["verbs"])
        for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]
    }  # fmt: skip
    # Nothing is ever created, updated (PUT) or deleted cluster-wide except as listed.
    assert all("*" not in v and "update" not in v and "escalate" not in v for v in verbs.values())
    # Created: Events, the pool's Machines, and the per-instance infra machines; never an
    # infra pool (a person or tool creates it).
    creators = {("events.k8s.io", "events"), ("cluster.x-k8s.io", "machines"),
                ("infrastructure.cluster.x-k8s.io", "inmemorymachines")}  # fmt: skip
    assert {k for k, v in verbs.items() if "create" in v} == creators
    # Exactly the verbs the code sends: informers list and watch, and only objects read by
    # reference (infra pools, bootstrap configs, bootstrap data Secrets) are read with GET.
    assert verbs[("cluster.x-k8s.io", "machinepools")] == {"list", "watch", "patch"}
    assert verbs[("cluster.x-k8s.io", "machines")] == {"list", "watch", "create", "patch", "delete"}
    assert verbs[("cluster.x-k8s.io", "clusters")] == {"get", "list", "watch"}
    assert verbs[("cluster.x-k8s.io", "machinehealthchecks")] == {"list", "watch"}
    assert verbs[("infrastructure.cluster.x-k8s.io", "inmemorymachinepools")] == {
        "get", "list", "watch", "patch", "delete",
    }  # fmt: skip
    assert verbs[("infrastructure.cluster.x-k8s.io", "inmemorymachines")] == {
        "list", "watch", "create", "patch", "delete",
    }  # fmt: skip
    assert verbs[("bootstrap.cluster.x-k8s.io", "*")] == {"get", "patch", "delete"}
    assert verbs[("", "secrets")] == {"get", "list", "watch"}
    assert verbs[("apiextensions.k8s.io", "customresourcedefinitions")] == {"get"}
    assert verbs[("events.k8s.io", "events")] == {"create", "patch"}
    statuses = {k for k in verbs if k[1].endswith("/status")}
    assert all(verbs[k] == {"patch"} for k in statuses)
    assert ("", "nodes") not in verbs  # Nodes live in workload clusters, reached by kubeconfig
    lease = find(docs, "Role", "mpc-machinepool-controller-leader-election")["rules"]
    by_name = [r for r in lease if r.get("resourceNames")]
    assert by_name == [{
        "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
        "resourceNames": ["mpc-machinepool-controller-leader-election"],
        "verbs": ["get", "update"],
    }]  # fmt: skip
    unnamed = [r for r in lease if not r.get("resourceNames")]
    assert [r["verbs"] for r in unnamed] == [["create"]]


async def test_metrics_are_secure_by_default_with_their_rbac_and_monitor(helm: Helm) -> None:
    docs = await helm.render(
        values={"metrics": {"serviceMonitor": {"enabled": True}}}, api_versions=[MONITORING]
    )
    assert find(docs, "ClusterRole", "mpc-machinepool-controller-metrics-auth")["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
    ]  # fmt: skip
    binding = find(docs, "ClusterRoleBinding", "mpc-machinepool-controller-metrics-auth")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mpc-machinepool-controller", "namespace": "mpc-system"}
    ]
    reader = find(docs, "ClusterRole", "mpc-machinepool-controller-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert "mpc-machinepool-controller-metrics-reader" not in {
        d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"
    }  # no readerSubjects: nothing bound
    endpoint = find(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}


async def test_a_metrics_certificate_and_its_ca_are_served_and_verified(helm: Helm) -> None:
    docs = await helm.render(values={"metrics": {
        "certSecret": "metrics-tls",
        "serviceMonitor": {"enabled": True, "tlsConfig": {"caSecret": {"name": "metrics-ca"}}},
    }}, api_versions=[MONITORING])  # fmt: skip
    container = _container(docs)
    assert "--metrics-cert-path=/etc/machinepool-controller/metrics-certs" in container["args"]
    assert {"name": "metrics-certs", "mountPath": "/etc/machinepool-controller/metrics-certs",
            "readOnly": True} in container["volumeMounts"]  # fmt: skip
    volumes = find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "metrics-certs", "secret": {"secretName": "metrics-tls", "items": [
        {"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"},
    ]}} in volumes  # fmt: skip
    assert find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"] == {
        "ca": {"secret": {"name": "metrics-ca", "key": "ca.crt"}},
        "serverName": "mpc-machinepool-controller-metrics.mpc-system.svc",
    }


async def test_plain_metrics_when_asked_drop_the_auth_rbac(helm: Helm) -> None:
    docs = await helm.render(values={"metrics": {
        "secure": False, "certSecret": "ignored", "serviceMonitor": {"enabled": True},
    }}, api_versions=[MONITORING])  # fmt: skip
    assert _parse_run_args(_container(docs)["args"]).metrics_secure is False
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"} == {
        "mpc-machinepool-controller"
    }
    endpoint = find(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert not {"scheme", "bearerTokenFile", "tlsConfig"} & set(endpoint)


async def test_network_policy_admits_only_the_metrics_and_probe_ports(helm: Helm) -> None:
    assert "NetworkPolicy" not in kinds(await helm.render())  # off by default
    docs = await helm.render(values=ALL_FEATURES)
    policy = find(docs, "NetworkPolicy")
    deployment = find(docs, "Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    metrics, probes = policy["spec"]["ingress"]
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}],
                       "from": ALL_FEATURES["networkPolicy"]["metricsFrom"]}  # fmt: skip
    assert probes == {"ports": [{"port": "health", "protocol": "TCP"}]}
    named = {p["name"] for p in _container(docs)["ports"]}
    assert named == {"metrics", "health"}  # the ports the policy names, and no others


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicaCunt": 2}, "replicaCunt"),
        ({"logging": {"format": "xml"}}, "/logging/format"),
        ({"controllers": ["machinepool", "autoscaler"]}, "/controllers/1"),
        ({"reconcileTimeout": "5 minutes"}, "/reconcileTimeout"),
        ({"leaderElection": {"leaseDuration": "15"}}, None),  # plain seconds are fine
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"serviceAccount": {"workloadIdentity": {"awsRoleArn": "my-role"}}},
         "/serviceAccount/workloadIdentity/awsRoleArn"),
        ({"watchNamespace": "Team_A"}, "/watchNamespace"),
        ({"watchNamespaces": ["team-a", "Team_B"]}, "/watchNamespaces/1"),
        ({"watchNamespaces": [""]}, "/watchNamespaces/0"),
        ({"rbac": {"infrastructureResources": ["awsmachinepools"]}}, "infrastructureResources"),
        ({"metrics": {"secure": "yes"}}, "/metrics/secure"),
        ({"metrics": {"readerSubjects": [{"kind": "Robot", "name": "r"}]}},
         "/metrics/readerSubjects/0/kind"),
        ({"networkPolicy": {"enabeld": True}}, "enabeld"),
        ({"extraArgs": ["leader-elect"]}, "/extraArgs/0"),
        ({"metrics": {"prometheusRule": {"notConvergingFor": "half an hour"}}},
         "/metrics/prometheusRule/notConvergingFor"),
        ({"leaderElection": {"enabled": False}}, "leaderElection.enabled"),
        ({"inmemory": {"stateFile": "/var/lib/state.json"}}, "inmemory.stateFile"),
    ],
)  # fmt: skip
async def test_bad_values_fail_naming_the_field(
    helm: Helm, values: dict[str, Any], field: str | None
) -> None:
    done = await helm.template(values=values)
    if field is None:
        assert done.code == 0, done.err
        return
    assert done.code != 0
    assert field in done.err, done.err


def test_schema_durations_are_the_controllers_durations() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    pattern = re.compile(schema["properties"]["syncPeriod"]["pattern"])
    for good in ["30s", "10m", "1h30m", "500ms", "2.5s", "15", "0.5"]:
        assert pattern.fullmatch(good), good
        parse_duration(good)
    for bad in ["10us", "1d", "5 minutes", "", "m"]:
        assert not pattern.fullmatch(bad), bad
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_values_file_and_schema_agree() -> None:
    """Every key of values.yaml is in the schema, so the defaults always pass it."""
    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(sub, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))


async def test_helm_lint_strict_passes(helm: Helm) -> None:
    done = await helm.run("lint", "--strict", CHART, "--kube-version", "1.35.4")
    assert done.code == 0, done.out + done.err
