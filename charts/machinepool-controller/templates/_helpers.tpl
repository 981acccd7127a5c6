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
