{{/*
The shop's fixed shape: each workload's port, what it stores where, and whom it calls
(Sources/bazaar/Serve.swift, GatewayCommand.swift). Values change sizes and endpoints, not this.
web is the storefront (`bazaar serve web`): no database, sessions in Redis, behind the gateway only.
*/}}
{{- define "bazaar.topology" -}}
catalog: {port: 9101, database: true, redis: false, upstreams: []}
accounts: {port: 9102, database: true, redis: false, upstreams: [], signingKey: true}
cart: {port: 9103, database: false, redis: true, upstreams: [catalog]}
orders: {port: 9104, database: true, redis: true, upstreams: [catalog, cart]}
notifications: {port: 9105, database: true, redis: true, upstreams: [accounts], smtp: true}
web: {port: 9106, database: false, redis: true, upstreams: [catalog, accounts, cart, orders, notifications]}
gateway: {port: 8080, database: false, redis: false, upstreams: [catalog, accounts, cart, orders, notifications, web]}
{{- end -}}

{{- define "bazaar.names" -}}
[catalog, accounts, cart, orders, notifications, web, gateway]
{{- end -}}

{{- define "bazaar.healthPort" -}}9180{{- end -}}
{{- define "bazaar.metricsPort" -}}9464{{- end -}}

{{- define "bazaar.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* Labels of one workload's resources: bazaar.labels (list $ name component) */}}
{{- define "bazaar.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/part-of: bazaar
app.kubernetes.io/component: {{ index . 2 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ $root.Chart.Name }}-{{ $root.Chart.Version }}
{{- end -}}

{{- define "bazaar.podLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/part-of: bazaar
app.kubernetes.io/component: {{ index . 2 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- define "bazaar.selector" -}}
app.kubernetes.io/name: {{ . }}
{{- end -}}
