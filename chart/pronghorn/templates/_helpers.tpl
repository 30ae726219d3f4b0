{{/* Shared snippets. Object names are fixed ("pronghorn", "minio") so the
gateway's functions_provider_url is the same for every release. */}}

{{- define "pronghorn.labels" -}}
app.kubernetes.io/name: pronghorn
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pronghorn.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "pronghorn.minioEndpoint" -}}
{{- if .Values.minio.endpoint -}}
{{ .Values.minio.endpoint }}
{{- else if .Values.minio.enabled -}}
minio.{{ .Release.Namespace }}:9000
{{- else -}}
{{ required "minio.endpoint is required when minio.enabled is false" .Values.minio.endpoint }}
{{- end -}}
{{- end }}
