{{/*
The objects' name: the release name (helm install authz … gives authz, the name
deploy/kubernetes/authz.yaml and deploy/istio use), or fullnameOverride.
*/}}
{{- define "envoy-okta-authz.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: the same on the pods, the Deployment's and the PDB's selectors, the Service,
the NetworkPolicy and the ServiceMonitor.
*/}}
{{- define "envoy-okta-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* A value given as a string or a list, as the comma-separated string the service reads. */}}
{{- define "envoy-okta-authz.commaList" -}}
{{- if kindIs "slice" . -}}{{ join "," . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* The policy ConfigMap: the operator's, or the chart's from policy.inline; empty: none. */}}
{{- define "envoy-okta-authz.policyConfigMap" -}}
{{- if .Values.policy.existingConfigMap -}}
{{ .Values.policy.existingConfigMap }}
{{- else if .Values.policy.inline -}}
{{ include "envoy-okta-authz.fullname" . }}-policy
{{- end -}}
{{- end -}}

{{/*
Checks across values that the schema cannot word clearly; each failure says what to change.
*/}}
{{- define "envoy-okta-authz.validate" -}}
{{- if and .Values.tls.clientCA.existingSecret (not .Values.tls.existingSecret) -}}
{{- fail "tls.clientCA.existingSecret needs tls.existingSecret: mutual TLS is TLS first" -}}
{{- end -}}
{{- if and .Values.introspection.clientSecret.asFile (not .Values.introspection.clientSecret.existingSecret) -}}
{{- fail "introspection.clientSecret.asFile needs introspection.clientSecret.existingSecret" -}}
{{- end -}}
{{- if .Values.pdb.enabled -}}
{{- $least := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled | int -}}
{{- if le $least (.Values.pdb.minAvailable | int) -}}
{{- fail (printf "pdb.minAvailable %d with at most %d replica(s) at rest would block every node drain: run more replicas (replicaCount, autoscaling.minReplicas) or set pdb.enabled=false" (.Values.pdb.minAvailable | int) $least) -}}
{{- end -}}
{{- end -}}
{{- end -}}
