{{/* Names: <release> when it holds the chart's name, else <release>-<name>. */}}
{{- define "remediator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "remediator.fullname" -}}
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

{{/* The labels of every object, besides the selector labels below. */}}
{{- define "remediator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: remediator
{{- end -}}

{{/* What selects the chart's objects of one kind: app.kubernetes.io/name (.name) and the release. */}}
{{- define "remediator.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/*
What selects serve's pods of one role (intake, worker or all). Every role keeps component
server: the NATS namespace's NetworkPolicy (deploy/kubernetes/nats) lets serve's pods in by it.
*/}}
{{- define "remediator.serveSelector" -}}
{{ include "remediator.selectorLabels" (dict "root" .root "name" (include "remediator.name" .root)) }}
app.kubernetes.io/component: server
remediator/role: {{ .role }}
{{- end -}}

{{- define "remediator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The name of one of serve's Secrets: made by the chart (secrets.create) or existing. */}}
{{- define "remediator.secretName" -}}
{{- $s := index .root.Values.secrets .key -}}
{{- if .root.Values.secrets.create -}}
{{- printf "%s-%s" (include "remediator.fullname" .root) .suffix -}}
{{- else -}}
{{- required (printf "secrets.%s.existingSecret: the name of an existing Secret (or secrets.create: true)" .key) $s.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* An agent node's Secret. */}}
{{- define "remediator.agentSecretName" -}}
{{- if .root.Values.secrets.create -}}
{{- printf "%s-agent-%s" (include "remediator.fullname" .root) .node.name -}}
{{- else -}}
{{- default (printf "remediator-agent-%s" .node.name) .node.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The cluster the agents' nodes belong to. */}}
{{- define "remediator.agentCluster" -}}
{{- if .Values.agent.cluster -}}
{{- .Values.agent.cluster -}}
{{- else -}}
{{- $clusters := default list .Values.serve.config.clusters -}}
{{- if not $clusters -}}{{- fail "agent.cluster: serve.config has no clusters to take it from" -}}{{- end -}}
{{- (first $clusters).name -}}
{{- end -}}
{{- end -}}

{{/*
The queue's durable consumers and their streams (queue/queue.go: Correlator, Executor,
Notifier, waiter), all held by the workers; make lint-deploy checks the list against the
consumers remediator's queue creates.
*/}}
{{- define "remediator.consumers" -}}
correlator: REMEDIATOR_EVENTS
executor: REMEDIATOR_WORK
notifier: REMEDIATOR_NOTIFY
waiter: REMEDIATOR_WAITS
{{- end -}}

{{/* Paths in serve's container. */}}
{{- define "remediator.paths" -}}
config: /etc/remediator/config.yaml
secrets: /etc/remediator/secrets
etcd: /etc/remediator/etcd
nats: /etc/remediator/nats
natsAgents: /etc/remediator/nats-agents
metrics: /etc/remediator/metrics
policies: /etc/remediator/policies
data: /var/lib/remediator
{{- end -}}

{{/* Fails on a key of a section of serve.config that the chart sets itself (.keys: key, what sets it). */}}
{{- define "remediator.owned" -}}
{{- range $key := keys .keys | sortAlpha -}}
{{- if hasKey $.section $key -}}
{{- fail (printf "serve.config.%s%s: the chart sets it, from %s" $.at $key (index $.keys $key)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
serve's configuration: serve.config with what the chart mounts and sets. The paths are where
templates/serve.yaml mounts the ConfigMaps and Secrets.
*/}}
{{- define "remediator.serveConfig" -}}
{{- $v := .Values -}}
{{- $p := include "remediator.paths" . | fromYaml -}}
{{- $c := deepCopy (default dict $v.serve.config) -}}
{{- include "remediator.owned" (dict "section" $c "at" "" "keys" (dict "listen" "serve.port" "data_dir" "an emptyDir (serve.dataDir)" "policies_dir" "policies")) -}}
{{- $_ := set $c "listen" (printf ":%v" $v.serve.port) -}}
{{- $_ := set $c "data_dir" $p.data -}}
{{- if $v.policies -}}{{- $_ := set $c "policies_dir" $p.policies -}}{{- end -}}
{{- $nats := default dict $c.nats -}}
{{- include "remediator.owned" (dict "section" $nats "at" "nats." "keys" (dict "url" "nats.url" "nkey_file" "nats.credentials" "creds_file" "nats.credentials" "agents_file" "nats.agents" "tls" "nats.tls")) -}}
{{- if hasKey $nats "insecure" -}}
{{- fail "serve.config.nats.insecure: not with this chart, whose NATS takes TLS and nkeys only (an insecure client is one anyone on the network can pose as)" -}}
{{- end -}}
{{- $_ := set $nats "url" (required "nats.url: the NATS cluster serve and the agents share" $v.nats.url) -}}
{{- if eq $v.nats.credentials "nkey" -}}
{{- $_ := set $nats "nkey_file" (printf "%s/serve.nk" $p.nats) -}}
{{- else if eq $v.nats.credentials "creds" -}}
{{- $_ := set $nats "creds_file" (printf "%s/serve.creds" $p.nats) -}}
{{- else -}}
{{- fail (printf "nats.credentials %q: nkey or creds" $v.nats.credentials) -}}
{{- end -}}
{{- $_ := set $nats "agents_file" (printf "%s/agents.yaml" $p.natsAgents) -}}
{{- if $v.nats.tls.enabled -}}
{{- $_ := set $nats "tls" (dict "ca_file" (printf "%s/ca.crt" $p.nats) "cert_file" (printf "%s/tls.crt" $p.nats) "key_file" (printf "%s/tls.key" $p.nats)) -}}
{{- end -}}
{{- $_ := set $c "nats" $nats -}}
{{- $webhook := default dict $c.webhook -}}
{{- include "remediator.owned" (dict "section" $webhook "at" "webhook." "keys" (dict "bearer_token_file" "secrets.serve (webhook-token)")) -}}
{{- $_ := set $webhook "bearer_token_file" (printf "%s/webhook-token" $p.secrets) -}}
{{- $_ := set $c "webhook" $webhook -}}
{{- $api := default dict $c.api -}}
{{- include "remediator.owned" (dict "section" $api "at" "api." "keys" (dict "operators_file" "secrets.serve (operators.yaml)" "metrics_token_file" "secrets.metricsToken")) -}}
{{- $_ := set $api "operators_file" (printf "%s/operators.yaml" $p.secrets) -}}
{{- $_ := set $api "metrics_token_file" (printf "%s/token" $p.metrics) -}}
{{- $_ := set $c "api" $api -}}
{{- if hasKey $c "slack" -}}
{{- $slack := default dict $c.slack -}}
{{- include "remediator.owned" (dict "section" $slack "at" "slack." "keys" (dict "bot_token_file" "secrets.serve (slack-bot-token)" "signing_secret_file" "secrets.serve (slack-signing-secret)" "app_token_file" "serve.slackSocketMode and secrets.serve (slack-app-token)")) -}}
{{- $_ := set $slack "bot_token_file" (printf "%s/slack-bot-token" $p.secrets) -}}
{{- if $v.serve.slackSocketMode -}}
{{- $_ := set $slack "app_token_file" (printf "%s/slack-app-token" $p.secrets) -}}
{{- else -}}
{{- $_ := set $slack "signing_secret_file" (printf "%s/slack-signing-secret" $p.secrets) -}}
{{- end -}}
{{- $_ := set $c "slack" $slack -}}
{{- end -}}
{{- if $v.etcd.tls.enabled -}}
{{- range $c.clusters -}}
{{- $etcd := default dict .etcd -}}
{{- if not (hasKey $etcd "tls") -}}
{{- $_ := set $etcd "tls" (dict "ca_file" (printf "%s/ca.crt" $p.etcd) "cert_file" (printf "%s/client.crt" $p.etcd) "key_file" (printf "%s/client.key" $p.etcd)) -}}
{{- end -}}
{{- $_ := set . "etcd" $etcd -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The node agents' configuration, the same for every node (their own files are in their Secrets). */}}
{{- define "remediator.agentConfig" -}}
{{- $v := .Values -}}
{{- $nats := dict "url" $v.nats.url "nkey_file" "/etc/remediator/nats/agent.nk" -}}
{{- if $v.nats.tls.enabled -}}
{{- $_ := set $nats "tls" (dict "ca_file" "/etc/remediator/nats/ca.crt" "cert_file" "/etc/remediator/nats/tls.crt" "key_file" "/etc/remediator/nats/tls.key") -}}
{{- end -}}
{{- $agent := dict "service_keys" $v.agent.serviceKeys "runtime" $v.agent.runtime "manifests_dir" $v.agent.paths.manifestsDir "stopped_dir" $v.agent.paths.stoppedDir "backup_dir" $v.agent.paths.backupDir -}}
{{- if ne $v.agent.paths.etcdDataDir "/var/lib/etcd" -}}
{{- $_ := set $agent "etcd_data_dir" $v.agent.paths.etcdDataDir -}}
{{- end -}}
{{- /* The agent reads only the cluster's name; the endpoints are not used. */ -}}
{{- $cluster := dict "name" (include "remediator.agentCluster" .) "etcd" (dict "endpoints" (list "https://127.0.0.1:2379")) -}}
{{- toYaml (dict "nats" $nats "clusters" (list $cluster) "agent" $agent) -}}
{{- end -}}

{{/* kubernetes-event-exporter's configuration: eventExporter.config, sending to serve's Service. */}}
{{- define "remediator.exporterConfig" -}}
{{- $c := deepCopy .Values.eventExporter.config -}}
{{- if hasKey $c "receivers" -}}{{- fail "eventExporter.config.receivers: the chart sets them (serve's Service and the webhook token)" -}}{{- end -}}
{{- $url := printf "http://%s.%s.svc:%v/webhooks/kubernetes" (include "remediator.fullname" .) .Release.Namespace .Values.serve.port -}}
{{- $_ := set $c "receivers" (list (dict "name" "remediator" "webhook" (dict "endpoint" $url "headers" (dict "Authorization" "Bearer ${REMEDIATOR_WEBHOOK_TOKEN}")))) -}}
{{- toYaml $c -}}
{{- end -}}

{{/* What the values must hold, checked before anything renders. */}}
{{- define "remediator.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.serve.role (list "split" "all")) -}}
{{- fail (printf "serve.role %q: split (an intake and a worker Deployment) or all (one Deployment)" $v.serve.role) -}}
{{- end -}}
{{- if lt (int $v.intake.replicas) 1 -}}
{{- fail (printf "intake.replicas %v: the intake keeps at least 1 replica: Alertmanager's webhook gives up after 10 s, so an intake scaled to zero loses alerts (the workers may scale to zero: worker.autoscaling.keda)" $v.intake.replicas) -}}
{{- end -}}
{{- $grace := ternary $v.worker.terminationGracePeriodSeconds $v.intake.terminationGracePeriodSeconds (eq $v.serve.role "split") -}}
{{- if lt (int $grace) 25 -}}
{{- fail (printf "%s.terminationGracePeriodSeconds %v: a worker on SIGTERM finishes its step within 20 s (serve's shutdown grace) and then hands the run back to the queue: give it at least 25" (ternary "worker" "intake" (eq $v.serve.role "split")) $grace) -}}
{{- end -}}
{{- $keda := $v.worker.autoscaling.keda -}}
{{- if $keda.enabled -}}
{{- if eq $v.serve.role "all" -}}
{{- fail "worker.autoscaling.keda.enabled with serve.role all: the one Deployment is also the intake, which never scales to zero: use serve.role split" -}}
{{- end -}}
{{- if eq (int $keda.minReplicaCount) 0 -}}
{{- range $v.serve.config.clusters -}}
{{- if .guarded_keys -}}
{{- fail (printf "worker.autoscaling.keda.minReplicaCount 0 with serve.config.clusters[%s].guarded_keys: the workers watch the guarded keys, and none runs at zero: a lost key would go unseen; set minReplicaCount 1" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $consumers := include "remediator.consumers" . | fromYaml -}}
{{- range $name, $_ := $keda.lagThreshold -}}
{{- if not (hasKey $consumers $name) -}}
{{- fail (printf "worker.autoscaling.keda.lagThreshold.%s: no such consumer (%s)" $name (keys $consumers | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $consumers -}}
{{- if not (hasKey $keda.lagThreshold $name) -}}
{{- fail (printf "worker.autoscaling.keda.lagThreshold.%s: missing: every consumer a worker serves needs its trigger" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.agent.enabled -}}
{{- $cluster := include "remediator.agentCluster" . -}}
{{- $seen := dict -}}
{{- range $v.agent.nodes -}}
{{- $node := default .name .nodeName -}}
{{- if not .name -}}{{- fail "agent.nodes: an entry without a name" -}}{{- end -}}
{{- if hasKey $seen $node -}}
{{- fail (printf "agent.nodes: node %s twice: each control-plane node has one agent" $node) -}}
{{- end -}}
{{- $_ := set $seen $node true -}}
{{- if not (hasKey $v.nats.agents (printf "%s/%s" $cluster $node)) -}}
{{- fail (printf "agent.nodes[%s]: nats.agents names no %s/%s: serve would take none of its answers (remediator agent credentials --node %s)" .name $cluster $node $node) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
