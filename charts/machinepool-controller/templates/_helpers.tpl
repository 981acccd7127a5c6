{{/* Names and labels shared by every template. */}}

{{- define "mpc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mpc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mpc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mpc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mpc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mpc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "mpc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mpc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mpc.leaseName" -}}
{{- default (printf "%s-leader-election" (include "mpc.fullname" .)) .Values.leaderElection.id -}}
{{- end -}}

{{- define "mpc.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* True when the cluster serves the Prometheus operator's API (ServiceMonitor, PrometheusRule). */}}
{{- define "mpc.hasMonitoring" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* Choices that the schema cannot express; each failure names the value. */}}
{{- define "mpc.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "leaderElection.enabled must be true when replicaCount > 1 (two active replicas would fight over every pool)" -}}
{{- end -}}
{{- if and .Values.inmemory.stateFile (not (hasPrefix "/tmp/" .Values.inmemory.stateFile)) -}}
{{- fail (printf "inmemory.stateFile %q must be under /tmp/ (the only writable directory; the root filesystem is read-only)" .Values.inmemory.stateFile) -}}
{{- end -}}
{{- if and .Values.inmemory.stateFile (gt (int .Values.replicaCount) 1) (not .Values.inmemory.endpoint) -}}
{{- fail "inmemory.stateFile keeps the simulator's state in one pod's /tmp; with replicaCount > 1 use inmemory.endpoint (a separate simulator) instead" -}}
{{- end -}}
{{- end -}}

{{/* The namespaces to watch, as a JSON list: watchNamespaces plus the older single
watchNamespace, without repeats; empty means every namespace. */}}
{{- define "mpc.watchNamespaces" -}}
{{- $names := list -}}
{{- range .Values.watchNamespaces -}}
{{- $names = append $names . -}}
{{- end -}}
{{- with .Values.watchNamespace -}}
{{- $names = append $names . -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* The rules the controller needs in every namespace it watches (a ClusterRole's rules when
it watches all). Each verb is one the code sends; informers need list and watch only (never
get); nothing here is ever updated (PUT) or deleted in bulk. */}}
{{- define "mpc.namespacedRules" -}}
# The core reconciler's own object: informer (list/watch), finalizer (apply, JSON patch),
# spec (providerIDList, replicas under replicas-managed-by) and ownerReferences (merge patch).
- apiGroups: [cluster.x-k8s.io]
  resources: [machinepools]
  verbs: [list, watch, patch]
- apiGroups: [cluster.x-k8s.io]
  resources: [machinepools/status]
  verbs: [patch]
# One Machine per instance: created by the core reconciler, status by the Machine and
# health-check controllers, its finalizer and delete-reason annotation patched, deleted on
# scale-in.
- apiGroups: [cluster.x-k8s.io]
  resources: [machines]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [cluster.x-k8s.io]
  resources: [machines/status]
  verbs: [patch]
# Clusters are only read: an informer (owner reference, pause, infrastructure readiness), and
# one GET by the in-memory cloud's kubelet before it trusts a <cluster>-kubeconfig Secret.
- apiGroups: [cluster.x-k8s.io]
  resources: [clusters]
  verbs: [get, list, watch]
# MachineHealthChecks: informer; status (counters, targets, conditions).
- apiGroups: [cluster.x-k8s.io]
  resources: [machinehealthchecks]
  verbs: [list, watch]
- apiGroups: [cluster.x-k8s.io]
  resources: [machinehealthchecks/status]
  verbs: [patch]
# Infra pools: informer, read by reference (GET), finalizer, adoption (ownerReferences,
# cluster label), spec and status written by the infrastructure reconciler, deleted with
# their MachinePool. Never created: a person or tool creates them.
{{- with .Values.rbac.infrastructurePoolResources }}
- apiGroups: [infrastructure.cluster.x-k8s.io]
  resources: {{ toJson . }}
  verbs: [get, list, watch, patch, delete]
- apiGroups: [infrastructure.cluster.x-k8s.io]
  resources:
    {{- range . }}
    - {{ printf "%s/status" . | quote }}
    {{- end }}
  verbs: [patch]
{{- end }}
# Infra machines: informer, one created per instance, finalizer, status, deleted with their
# instance.
{{- with .Values.rbac.infrastructureMachineResources }}
- apiGroups: [infrastructure.cluster.x-k8s.io]
  resources: {{ toJson . }}
  verbs: [list, watch, create, patch, delete]
- apiGroups: [infrastructure.cluster.x-k8s.io]
  resources:
    {{- range . }}
    - {{ printf "%s/status" . | quote }}
    {{- end }}
  verbs: [patch]
{{- end }}
# Bootstrap configs named by a pool's configRef: read, adopted, deleted with the pool.
{{- with .Values.rbac.bootstrapResources }}
- apiGroups: [bootstrap.cluster.x-k8s.io]
  resources: {{ toJson . }}
  verbs: [get, patch, delete]
{{- end }}
# <cluster>-kubeconfig Secrets (an informer with a label selector; RBAC cannot narrow by
# label) and bootstrap data Secrets (one GET). Never written.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
# Events on MachinePools and infra pools (created, then patched as a series).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
