{{/* The release's resource name: the release name, with the chart's appended unless it has it. */}}
{{- define "dura.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dura.peers" -}}
{{- printf "%s-peers" (include "dura.fullname" .) -}}
{{- end -}}

{{- define "dura.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dura.labels" -}}
{{ include "dura.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The domain of the pods' peer names. With peer TLS it is namespace-qualified: a certificate's
wildcard needs two labels after it, so `*.<peers>.<namespace>.svc` can name every pod.
*/}}
{{- define "dura.peerDomain" -}}
{{- if .Values.tls.peer.enabled -}}
{{- printf "%s.%s.svc" (include "dura.peers" .) .Release.Namespace -}}
{{- else -}}
{{- include "dura.peers" . -}}
{{- end -}}
{{- end -}}

{{/* Every pod, by its stable peer name: node N+1 is pod N. */}}
{{- define "dura.initialCluster" -}}
{{- $fullname := include "dura.fullname" . -}}
{{- $peers := include "dura.peerDomain" . -}}
{{- $members := list -}}
{{- range $ordinal := until (int .Values.replicaCount) -}}
{{- $members = append $members (printf "%d=%s-%d.%s:%d" (add1 $ordinal) $fullname $ordinal $peers (int $.Values.ports.peer)) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{- define "dura.checkValues" -}}
{{- if lt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount must be at least 1" -}}
{{- end -}}
{{- if or (lt (int .Values.cluster.replication) 1) (gt (int .Values.cluster.replication) (int .Values.replicaCount)) -}}
{{- fail (printf "cluster.replication (%d) must be between 1 and replicaCount (%d)" (int .Values.cluster.replication) (int .Values.replicaCount)) -}}
{{- end -}}
{{- if lt (int .Values.cluster.shards) 1 -}}
{{- fail "cluster.shards must be at least 1" -}}
{{- end -}}
{{- if not (has .Values.cluster.durability (list "fsync" "relaxed")) -}}
{{- fail (printf "cluster.durability must be fsync or relaxed, not %q" .Values.cluster.durability) -}}
{{- end -}}
{{- range $port := list "client" "peer" -}}
{{- $tls := index $.Values.tls $port -}}
{{- if and $tls.enabled (not $tls.secretName) -}}
{{- fail (printf "tls.%s.enabled needs tls.%s.secretName: the Secret holding its certificates" $port $port) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.client.requireClientCert (not .Values.tls.client.enabled) -}}
{{- fail "tls.client.requireClientCert needs tls.client.enabled" -}}
{{- end -}}
{{- end -}}
