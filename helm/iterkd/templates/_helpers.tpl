{{/* Names */}}
{{- define "iterkd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iterkd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The service names every other part addresses: <fullname>-<component>. */}}
{{- define "iterkd.componentName" -}}
{{- printf "%s-%s" (include "iterkd.fullname" .root) .component -}}
{{- end -}}

{{- define "iterkd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iterkd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "iterkd.labels" -}}
{{ include "iterkd.selectorLabels" . }}
app.kubernetes.io/part-of: iterkd
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* An image reference: [registry/]repository:tag, the tag never "latest". */}}
{{- define "iterkd.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "%s: image tag \"latest\" is not allowed; pin a version" .component) -}}
{{- end -}}
{{- $repo := .image.repository -}}
{{- if .root.Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $repo -}}
{{- end -}}
{{- printf "%s:%s%s" $repo $tag (.suffix | default "") -}}
{{- end -}}

{{- define "iterkd.controllerServiceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-controller" (include "iterkd.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "iterkd.stageServiceAccount" -}}
{{- printf "%s-stage" (include "iterkd.fullname" .) -}}
{{- end -}}

{{/* The store: credentials Secret, endpoint, mount path */}}
{{- define "iterkd.storeSecret" -}}
{{- default (printf "%s-store" (include "iterkd.fullname" .)) .Values.store.credentials.existingSecret -}}
{{- end -}}

{{- define "iterkd.credentialsDir" -}}/var/run/secrets/iterkd-store{{- end -}}

{{- define "iterkd.storeEndpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "%s-minio.%s.svc:%d" (include "iterkd.fullname" .) .Release.Namespace (int .Values.minio.port) -}}
{{- else if .Values.externalS3.endpoint -}}
{{- .Values.externalS3.endpoint -}}
{{- else -}}
{{- fail "store: set minio.enabled=true or externalS3.endpoint (host:port of an S3 endpoint)" -}}
{{- end -}}
{{- end -}}

{{- define "iterkd.target" -}}
{{- $svc := index .root.Values .component -}}
{{- printf "%s.%s.svc:%d" (include "iterkd.componentName" .) .root.Release.Namespace (int $svc.port) -}}
{{- end -}}

{{/* The whole IterKD configuration (config.yaml) as a dict rendered to YAML. */}}
{{- define "iterkd.config" -}}
{{- $v := .Values -}}
{{- $store := dict "backend" "s3" "endpoint" (include "iterkd.storeEndpoint" .) "bucket" $v.store.bucket "credentials_dir" (include "iterkd.credentialsDir" .) -}}
{{- if $v.minio.enabled -}}
{{- $_ := set $store "secure" false -}}
{{- else -}}
{{- $_ := set $store "secure" $v.externalS3.secure -}}
{{- if $v.externalS3.region }}{{ $_ := set $store "region" $v.externalS3.region }}{{ end -}}
{{- end -}}
{{- if $v.store.prefix }}{{ $_ := set $store "prefix" $v.store.prefix }}{{ end -}}
{{- $store = mustMergeOverwrite $store (deepCopy $v.store.config) -}}
{{- $cfg := dict "store" $store "logging" $v.logging -}}
{{- $teacherTarget := include "iterkd.target" (dict "root" . "component" "teacher") -}}
{{- $feedbackTarget := include "iterkd.target" (dict "root" . "component" "feedback") -}}
{{- range $name := list "teacher" "trainer" "feedback" "questions" -}}
{{- $svc := index $v $name -}}
{{- $section := dict "server" (dict "host" "0.0.0.0" "port" (int $svc.port) "metrics_port" (int $svc.metricsPort)) -}}
{{- if eq $name "feedback" -}}
{{- $_ := set $section "judge" (dict "endpoint" (dict "kind" "teacher" "target" $teacherTarget)) -}}
{{- end -}}
{{- if eq $name "questions" -}}
{{- $_ := set $section "teacher_target" $teacherTarget -}}
{{- $_ := set $section "feedback_target" $feedbackTarget -}}
{{- end -}}
{{- $_ := set $cfg $name (mustMergeOverwrite $section (deepCopy $svc.config)) -}}
{{- end -}}
{{- $c := $v.controller -}}
{{- $targets := dict -}}
{{- range $name := list "teacher" "trainer" "feedback" "questions" -}}
{{- $_ := set $targets $name (include "iterkd.target" (dict "root" $ "component" $name)) -}}
{{- end -}}
{{- $pullSecrets := list -}}
{{- range $v.imagePullSecrets -}}
{{- $pullSecrets = append $pullSecrets .name -}}
{{- end -}}
{{- $k8s := dict
  "namespace" .Release.Namespace
  "stage_image" (include "iterkd.image" (dict "root" . "image" $c.image "component" "controller"))
  "services" $targets
  "service_account" (include "iterkd.stageServiceAccount" .)
  "config_map" (printf "%s-config" (include "iterkd.fullname" .))
  "store_secret" (include "iterkd.storeSecret" .)
  "credentials_dir" (include "iterkd.credentialsDir" .)
  "image_pull_policy" $v.image.pullPolicy
  "image_pull_secrets" $pullSecrets
  "pod_security_context" $v.podSecurityContext
  "container_security_context" $v.containerSecurityContext
  "labels" (dict "app.kubernetes.io/part-of" "iterkd" "app.kubernetes.io/instance" .Release.Name) -}}
{{- if $v.trainer.scaleToZeroBetweenRuns -}}
{{- $_ := set $k8s "trainer_scaling" (dict "deployment" (include "iterkd.componentName" (dict "root" . "component" "trainer")) "replicas" (int $v.trainer.replicas) "scale_to_zero" true) -}}
{{- end -}}
{{- $controller := dict
  "server" (dict "host" "0.0.0.0" "port" (int $c.port) "metrics_port" (int $c.metricsPort))
  "executor" "kubernetes"
  "kubernetes" $k8s -}}
{{- $_ := set $cfg "controller" (mustMergeOverwrite $controller (deepCopy $c.config)) -}}
{{- if $v.run -}}
{{- $_ := set $cfg "run" $v.run -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
