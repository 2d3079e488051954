{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "meshtrust.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every object. Kept at 40 characters so that suffixes
such as "-controller-leader-election" still fit in 63.
*/}}
{{- define "meshtrust.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "meshtrust.controllerName" -}}
{{- printf "%s-controller" (include "meshtrust.fullname" .) }}
{{- end }}

{{- define "meshtrust.serviceAccountName" -}}
{{- default (include "meshtrust.controllerName" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The identity the API server sees for the controller's pods. */}}
{{- define "meshtrust.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "meshtrust.serviceAccountName" .) }}
{{- end }}

{{- define "meshtrust.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.issuer.clusterResourceNamespace }}
{{- end }}

{{/* Service accounts the issuer may mint tokens for, as a JSON list. */}}
{{- define "meshtrust.vaultServiceAccounts" -}}
{{- if .Values.issuer.vaultServiceAccounts }}
{{- .Values.issuer.vaultServiceAccounts | uniq | toJson }}
{{- else }}
{{- list (include "meshtrust.serviceAccountName" .) | toJson }}
{{- end }}
{{- end }}

{{/* Namespaces where the issuer reads Secrets and mints tokens, as a JSON list. */}}
{{- define "meshtrust.issuerNamespaces" -}}
{{- prepend .Values.issuer.issuerNamespaces (include "meshtrust.clusterResourceNamespace" .) | uniq | toJson }}
{{- end }}

{{- define "meshtrust.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshtrust.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshtrust.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "meshtrust.labels" -}}
helm.sh/chart: {{ include "meshtrust.chartLabel" . }}
{{ include "meshtrust.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshtrust
{{- end }}

{{- define "meshtrust.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Fail early on combinations the controller would reject at start-up. */}}
{{- define "meshtrust.validate" -}}
{{- if not (or .Values.issuer.enabled .Values.syncer.enabled) }}
{{- fail "nothing to run: set issuer.enabled and/or syncer.enabled" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would reconcile" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) }}
{{- fail "podDisruptionBudget.minAvailable must be below replicaCount, or no node could ever be drained; disable the budget for a single replica" }}
{{- end }}
{{- if and .Values.syncer.enabled (has "*" .Values.syncer.targetNamespaces) }}
{{- fail "syncer.targetNamespaces must list namespaces: \"*\" would need cluster-wide Secret write access, which this chart does not grant" }}
{{- end }}
{{- end }}
