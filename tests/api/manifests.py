"""Manifests shaped like what Cluster API v1beta2 and its users write (test data)."""

from __future__ import annotations

import copy
from typing import Any

import yaml

_MACHINE_POOL = """
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachinePool
metadata:
  name: workers
  namespace: default
  uid: 0b0f7c2e-5a53-4d3f-9a51-8d6c7f0f2a11
  resourceVersion: "4711"
  generation: 3
  creationTimestamp: "2025-03-01T10:00:00Z"
  labels:
    cluster.x-k8s.io/cluster-name: demo
  annotations:
    cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size: "1"
    cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size: "10"
  finalizers:
  - machinepool.cluster.x-k8s.io
  ownerReferences:
  - apiVersion: cluster.x-k8s.io/v1beta2
    kind: Cluster
    name: demo
    uid: 4c1e6c0e-1111-2222-3333-444455556666
  managedFields:
  - manager: clusterctl
    operation: Apply
    apiVersion: cluster.x-k8s.io/v1beta2
    fieldsType: FieldsV1
    fieldsV1: {"f:spec": {"f:replicas": {}}}
spec:
  clusterName: demo
  replicas: 3
  template:
    metadata:
      labels:
        nodepool: workers
    spec:
      clusterName: demo
      version: v1.35.4
      minReadySeconds: 30
      bootstrap:
        dataSecretName: workers-bootstrap
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: InMemoryMachinePool
        name: workers
      deletion:
        nodeDrainTimeoutSeconds: 300
        nodeDeletionTimeoutSeconds: 10
      readinessGates:
      - conditionType: example.com/Ready
        polarity: Positive
  providerIDList:
  - inmemory:///zone-a/i-0001
  - inmemory:///zone-b/i-0002
  - inmemory:///zone-a/i-0003
  failureDomains:
  - zone-a
  - zone-b
status:
  conditions:
  - type: Paused
    status: "False"
    reason: NotPaused
    message: ""
    lastTransitionTime: "2025-03-01T10:00:05Z"
    observedGeneration: 3
  initialization:
    infrastructureProvisioned: true
    bootstrapDataSecretCreated: true
  nodeRefs:
  - apiVersion: v1
    kind: Node
    name: node-1
    uid: 9d7a0c42-aaaa-bbbb-cccc-ddddeeeeffff
  replicas: 3
  readyReplicas: 2
  availableReplicas: 2
  upToDateReplicas: 3
  versions:
  - version: v1.35.4
    replicas: 3
  phase: ScalingUp
  observedGeneration: 3
  deprecated:
    v1beta1:
      conditions:
      - type: Ready
        status: "False"
        severity: Info
        reason: WaitingForReplicasReady
        lastTransitionTime: "2025-03-01T10:00:05Z"
      readyReplicas: 2
      availableReplicas: 2
      unavailableReplicas: 1
"""

_MACHINE = """
apiVersion: cluster.x-k8s.io/v1beta2
kind: Machine
metadata:
  name: workers-i-0001
  namespace: default
  labels:
    cluster.x-k8s.io/cluster-name: demo
    cluster.x-k8s.io/pool-name: workers
  ownerReferences:
  - apiVersion: cluster.x-k8s.io/v1beta2
    kind: MachinePool
    name: workers
    uid: 0b0f7c2e-5a53-4d3f-9a51-8d6c7f0f2a11
    controller: true
    blockOwnerDeletion: true
spec:
  clusterName: demo
  bootstrap:
    dataSecretName: ""
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: InMemoryMachine
    name: workers-i-0001
  providerID: inmemory:///zone-a/i-0001
  version: v1.35.4
status:
  nodeRef:
    name: node-1
  nodeInfo:
    kubeletVersion: v1.35.4
    osImage: Debian GNU/Linux 12
    architecture: amd64
    swap: {}
  addresses:
  - type: InternalIP
    address: 10.0.0.1
  lastUpdated: "2025-03-01T10:01:00Z"
  phase: Running
  initialization:
    infrastructureProvisioned: true
    bootstrapDataSecretCreated: true
  conditions:
  - type: Ready
    status: "True"
    reason: Ready
    message: ""
    lastTransitionTime: "2025-03-01T10:01:00Z"
"""

_CLUSTER = """
apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: demo
  namespace: default
spec:
  paused: false
  clusterNetwork:
    pods:
      cidrBlocks: ["192.168.0.0/16"]
    services:
      cidrBlocks: ["10.128.0.0/12"]
  controlPlaneEndpoint:
    host: 10.0.0.10
    port: 6443
  controlPlaneRef:
    apiGroup: controlplane.cluster.x-k8s.io
    kind: KubeadmControlPlane
    name: demo-control-plane
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: DockerCluster
    name: demo
  topology:
    classRef:
      name: quick-start
    version: v1.35.4
    workers:
      machinePools:
      - class: default-worker
        name: mp-0
        replicas: 2
status:
  initialization:
    infrastructureProvisioned: true
    controlPlaneInitialized: true
  phase: Provisioned
  controlPlane:
    desiredReplicas: 3
    replicas: 3
  conditions:
  - type: Available
    status: "True"
    reason: Available
    message: ""
    lastTransitionTime: "2025-03-01T09:00:00Z"
"""

_IN_MEMORY_MACHINE_POOL = """
apiVersion: infrastructure.cluster.x-k8s.io/v1alpha1
kind: InMemoryMachinePool
metadata:
  name: workers
  namespace: default
spec:
  providerIDList:
  - inmemory:///zone-a/i-0001
  minSize: 1
  maxSize: 10
  deletePolicy: Newest
  template:
    version: "2"
    instanceType: small
    bootDelaySeconds: 5
    readyDelaySeconds: 2
    failureRate: 0.1
    zones: [zone-a, zone-b]
  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 25%
status:
  ready: true
  initialization:
    provisioned: true
  replicas: 1
  infrastructureMachineKind: InMemoryMachine
  instances:
  - instanceID: i-0001
    providerID: inmemory:///zone-a/i-0001
    zone: zone-a
    state: Running
    version: "2"
    ready: true
    launchedAt: "2025-03-01T10:00:01Z"
"""


def _load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def machine_pool() -> dict[str, Any]:
    """A MachinePool as Cluster API v1beta2 would store it, status included."""
    return copy.deepcopy(_load(_MACHINE_POOL))


def machine() -> dict[str, Any]:
    """A MachinePool Machine as Cluster API v1beta2 would store it."""
    return copy.deepcopy(_load(_MACHINE))


def cluster() -> dict[str, Any]:
    """A ClusterClass-based Cluster with fields we do not model."""
    return copy.deepcopy(_load(_CLUSTER))


def in_memory_machine_pool() -> dict[str, Any]:
    """An InMemoryMachinePool with every field set."""
    return copy.deepcopy(_load(_IN_MEMORY_MACHINE_POOL))
