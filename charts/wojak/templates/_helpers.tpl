{{/* Names */}}
{{- define "wojak.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wojak.fullname" -}}
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

{{- define "wojak.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wojak.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wojak.instanceLabels" -}}
app.kubernetes.io/name: {{ include "wojak.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The release's engine pods (not its test or operator pods) */}}
{{- define "wojak.selectorLabels" -}}
{{ include "wojak.instanceLabels" . }}
app.kubernetes.io/component: engine
{{- end -}}

{{- define "wojak.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "wojak.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wojak
wojak.io/source: {{ .Values.source.type }}
{{- end -}}

{{/* Images */}}
{{- define "wojak.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "wojak.engineImage" -}}
{{- printf "%s:%s" .Values.image.engine.repository (include "wojak.tag" .) -}}
{{- end -}}

{{- define "wojak.sidecarImage" -}}
{{- $repo := .Values.image.sidecar.repository -}}
{{- if .Values.image.sidecar.appendSourceType -}}{{- $repo = printf "%s-%s" $repo .Values.source.type -}}{{- end -}}
{{- printf "%s:%s" $repo (include "wojak.tag" .) -}}
{{- end -}}

{{/* The risk ConfigMap the engines read */}}
{{- define "wojak.riskConfigMap" -}}
{{- if .Values.risk.existingConfigMap -}}
{{- .Values.risk.existingConfigMap -}}
{{- else if .Values.risk.config -}}
{{- printf "%s-risk" (include "wojak.fullname" .) -}}
{{- else -}}
{{- fail "risk: set risk.config (the whole risk file, every limit named) or risk.existingConfigMap (e.g. the ConfigMap a RiskPolicy renders): the engine never runs without limits" -}}
{{- end -}}
{{- end -}}

{{/* The engine's socket: a private subdirectory (0700, the engine's user) of the shared emptyDir */}}
{{- define "wojak.socketDir" -}}/run/wojak{{- end -}}
{{- define "wojak.socketPath" -}}/run/wojak/engine/engine.sock{{- end -}}

{{/* Restricted Pod Security: every container */}}
{{- define "wojak.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "wojak.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The sidecar's health port: the HTTP intake's own port, else the health server's */}}
{{- define "wojak.healthPort" -}}
{{- if eq .Values.source.type "http" -}}{{ .Values.source.http.port }}{{- else -}}{{ .Values.source.healthPort }}{{- end -}}
{{- end -}}

{{/* Seconds an ordinary-container engine waits after the pod's SIGTERM before its own: the source's drain, plus 5 */}}
{{- define "wojak.engineStopDelay" -}}
{{- add (.Values.source.drainSeconds | ceil | int) 5 -}}
{{- end -}}

{{/* The engine container (a native sidecar or an ordinary container) */}}
{{- define "wojak.engineContainer" -}}
- name: engine
  image: {{ include "wojak.engineImage" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.engine.nativeSidecar }}
  restartPolicy: Always
  {{- else }}
  # An ordinary container gets SIGTERM with the source: wait out the source's drain first, so the
  # in-flight messages still get the engine's answer (a native sidecar is stopped after the source).
  lifecycle:
    preStop:
      exec:
        command: ["/opt/wojak/bin/python3", "-c", "import time; time.sleep({{ include "wojak.engineStopDelay" . }})"]
  {{- end }}
  command: ["wojak-engine"]
  env:
    {{- $env := include "wojak.engineEnv" . }}
    {{- $env | nindent 4 }}
    {{- include "wojak.extraEnv" (list $env .Values.engine.extraEnv "engine.extraEnv") | nindent 4 }}
  securityContext:
    {{- include "wojak.containerSecurityContext" . | nindent 4 }}
  # Liveness over the socket; the source starts only once the engine answers (startupProbe).
  startupProbe:
    exec:
      command: ["wojak-engine", "ping", "--socket", {{ include "wojak.socketPath" . | quote }}]
    periodSeconds: 2
    timeoutSeconds: 5
    failureThreshold: 60
  readinessProbe:
    exec:
      command: ["wojak-engine", "ping", "--socket", {{ include "wojak.socketPath" . | quote }}]
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 2
  livenessProbe:
    exec:
      command: ["wojak-engine", "ping", "--socket", {{ include "wojak.socketPath" . | quote }}]
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  resources:
    {{- toYaml .Values.engine.resources | nindent 4 }}
  volumeMounts:
    - name: socket
      mountPath: {{ include "wojak.socketDir" . }}
    - name: risk
      mountPath: /etc/wojak/risk
      readOnly: true
    - name: data
      mountPath: /var/lib/wojak
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* The pod spec shared by the Deployment and the helm-test engine pod */}}
{{- define "wojak.podVolumes" -}}
- name: socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: data
  emptyDir:
    sizeLimit: {{ .Values.engine.dataVolume.sizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: risk
  configMap:
    name: {{ include "wojak.riskConfigMap" . }}
    items:
      - key: risk.yaml
        path: risk.yaml
{{- end -}}

{{/* One env entry per set value: name, value (skipped when empty) */}}
{{- define "wojak.envIf" -}}
{{- $v := index . 1 -}}
{{- if or (kindIs "bool" $v) (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) $v }}
- name: {{ index . 0 }}
  value: {{ include "wojak.str" $v | quote }}
{{- end -}}
{{- end -}}

{{/* The source sidecar's environment: the shared WOJAK_SIDECAR_* settings, then its broker's */}}
{{- define "wojak.sourceEnv" -}}
{{- $s := .Values.source -}}
- name: WOJAK_ENGINE_SOCKET
  value: {{ include "wojak.socketPath" . | quote }}
- name: WOJAK_LOG_LEVEL
  value: {{ .Values.engine.logLevel | quote }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_ENGINE_DEADLINE" $s.engineDeadline) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_MAX_BODY_BYTES" $s.maxBodyBytes) }}
{{- if eq $s.type "http" }}
{{- $h := $s.http }}
- name: WOJAK_SIDECAR_HOST
  value: "0.0.0.0"
- name: WOJAK_SIDECAR_PORT
  value: {{ include "wojak.str" $h.port | quote }}
- name: WOJAK_API_KEYS_FILE
  value: /etc/wojak/keys/keys.yaml
{{- include "wojak.envIf" (list "WOJAK_API_KEYS_RELOAD_SECONDS" $h.apiKeysReloadSeconds) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_MAX_CONNECTIONS" $h.maxConnections) }}
{{- else }}
- name: WOJAK_SIDECAR_HEALTH_HOST
  value: "0.0.0.0"
- name: WOJAK_SIDECAR_HEALTH_PORT
  value: {{ include "wojak.str" $s.healthPort | quote }}
- name: WOJAK_SIDECAR_CARRIES
  value: {{ $s.carries | quote }}
{{- if eq $s.carries "orders" }}
- name: WOJAK_SIDECAR_ACCOUNTS
  value: {{ required (printf "source.accounts: name the accounts a %s source may trade (anyone who can publish to it trades as them)" $s.type) (join "," $s.accounts | default "") | quote }}
{{- else if $s.accounts }}
{{- fail "source.accounts: a source with carries: ticks trades no account (its messages are market data ticks, sent under ticks:write); leave source.accounts empty" }}
{{- end }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_CONCURRENCY" $s.concurrency) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_DRAIN_SECONDS" $s.drainSeconds) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_SETTLE_TIMEOUT" $s.settleTimeout) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_SETTLE_ATTEMPTS" $s.settleAttempts) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_BACKOFF_BASE" $s.backoffBase) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_BACKOFF_MAX" $s.backoffMax) }}
{{- end }}
{{- if eq $s.type "rabbitmq" }}
{{- $b := $s.rabbitmq }}
- name: WOJAK_SIDECAR_RABBITMQ_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "source.rabbitmq.urlSecret.name: the Secret holding the amqps:// URL (credentials never go in values)" $b.urlSecret.name }}
      key: {{ $b.urlSecret.key }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_QUEUE" $b.queue) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_PREFETCH" $b.prefetch) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE" $b.deadLetterExchange) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE" $b.deadLetterQueue) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_REPLY_EXCHANGE" $b.replyExchange) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_REPLY_TO_ALLOWED" (join "," $b.replyToAllowed)) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_RABBITMQ_DECLARE_TOPOLOGY" $b.declareTopology) }}
{{- else if eq $s.type "kafka" }}
{{- $b := $s.kafka }}
- name: WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS
  value: {{ required "source.kafka.bootstrapServers: host:port[,host:port...]" $b.bootstrapServers | quote }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_TOPIC" $b.topic) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_GROUP_ID" $b.groupId) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_DEAD_LETTER_TOPIC" $b.deadLetterTopic) }}
- name: WOJAK_SIDECAR_KAFKA_RESULTS_TOPIC
  value: {{ $b.resultsTopic | quote }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_CLIENT_ID" $b.clientId) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_PREFETCH" $b.prefetch) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_COMMIT_INTERVAL" $b.commitInterval) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_SESSION_TIMEOUT_MS" $b.sessionTimeoutMs) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_HEARTBEAT_INTERVAL_MS" $b.heartbeatIntervalMs) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_AUTO_OFFSET_RESET" $b.autoOffsetReset) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_SECURITY_PROTOCOL" $b.securityProtocol) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_SASL_MECHANISM" $b.saslMechanism) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KAFKA_SASL_USERNAME" $b.saslUsername) }}
{{- with $b.saslPasswordSecret.name }}
- name: WOJAK_SIDECAR_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $b.saslPasswordSecret.key }}
{{- end }}
{{- with $b.tlsCaKey }}
- name: WOJAK_SIDECAR_KAFKA_SSL_CAFILE
  value: /etc/wojak/kafka-tls/{{ . }}
{{- end }}
{{- with $b.tlsCertKey }}
- name: WOJAK_SIDECAR_KAFKA_SSL_CERTFILE
  value: /etc/wojak/kafka-tls/{{ . }}
{{- end }}
{{- with $b.tlsKeyKey }}
- name: WOJAK_SIDECAR_KAFKA_SSL_KEYFILE
  value: /etc/wojak/kafka-tls/{{ . }}
{{- end }}
{{- else if or (eq $s.type "sqs") (eq $s.type "sns") }}
{{- $b := index $s $s.type }}
{{- $p := printf "WOJAK_SIDECAR_%s_" (upper $s.type) }}
- name: {{ $p }}QUEUE_URL
  value: {{ required (printf "source.%s.queueUrl: the SQS queue the sidecar reads" $s.type) $b.queueUrl | quote }}
- name: {{ $p }}DEAD_LETTER_QUEUE_URL
  value: {{ required (printf "source.%s.deadLetterQueueUrl: where poison messages go, with their reason" $s.type) $b.deadLetterQueueUrl | quote }}
{{- include "wojak.envIf" (list (print $p "REGION") $b.region) }}
{{- include "wojak.envIf" (list (print $p "ENDPOINT") $b.endpoint) }}
{{- include "wojak.envIf" (list (print $p "BATCH_SIZE") $b.batchSize) }}
{{- include "wojak.envIf" (list (print $p "WAIT_TIME") $b.waitTime) }}
{{- include "wojak.envIf" (list (print $p "VISIBILITY") $b.visibility) }}
{{- include "wojak.envIf" (list (print $p "RECEIVERS") $b.receivers) }}
{{- if eq $s.type "sns" }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_SNS_TOPIC_ARN" $b.topicArn) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_SNS_RAW_DELIVERY" $b.rawDelivery) }}
{{- end }}
{{- else if eq $s.type "pubsub" }}
{{- $b := $s.pubsub }}
- name: WOJAK_SIDECAR_PUBSUB_PROJECT
  value: {{ required "source.pubsub.project: the Google Cloud project" $b.project | quote }}
- name: WOJAK_SIDECAR_PUBSUB_SUBSCRIPTION
  value: {{ regexReplaceAll "^projects/[^/]+/subscriptions/" (required "source.pubsub.subscription: the subscription's id" $b.subscription) "" | quote }}
- name: WOJAK_SIDECAR_PUBSUB_DEAD_LETTER_TOPIC
  value: {{ regexReplaceAll "^projects/[^/]+/topics/" (required "source.pubsub.deadLetterTopic: the topic poison messages go to" $b.deadLetterTopic) "" | quote }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_PUBSUB_MAX_MESSAGES" $b.maxMessages) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_PUBSUB_MAX_BYTES" $b.maxBytes) }}
{{- else if eq $s.type "kinesis" }}
{{- $b := $s.kinesis }}
{{- if not (or $b.deadLetterQueueUrl $b.deadLetterStream) }}
{{- fail "source.kinesis: set deadLetterQueueUrl (an SQS queue) or deadLetterStream: where poison records go, with their reason" }}
{{- end }}
- name: WOJAK_SIDECAR_KINESIS_STREAM
  value: {{ required "source.kinesis.streamName: the stream the sidecar reads" $b.streamName | quote }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_REGION" $b.region) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_ENDPOINT" $b.endpoint) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_LEASE_TABLE" $b.leaseTable) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_CREATE_LEASE_TABLE" $b.createLeaseTable) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_LEASE_SECONDS" $b.leaseSeconds) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_INITIAL_POSITION" $b.initialPosition) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL" $b.deadLetterQueueUrl) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_DEAD_LETTER_STREAM" $b.deadLetterStream) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_RESULTS_STREAM" $b.resultsStream) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_BATCH_SIZE" $b.batchSize) }}
{{- include "wojak.envIf" (list "WOJAK_SIDECAR_KINESIS_PREFETCH" $b.prefetch) }}
- name: WOJAK_SIDECAR_KINESIS_WORKER_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- end -}}

{{/* A value as the string a setting reads: whole numbers without an exponent (values are float64) */}}
{{- define "wojak.str" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}{{ int64 . }}{{- else -}}{{ toString . }}{{- end -}}
{{- end -}}

{{/* checkov skips, each with its reason (checkov reads checkov.io/skipN annotations) */}}
{{- define "wojak.checkovSkips" -}}
{{- $reasons := dict
  "CKV_K8S_43" "images are pinned by their release tag (image.tag, default the chart's appVersion); pin digests through your registry's admission policy"
  "CKV_K8S_11" "no CPU limit on purpose: CFS throttling stalls the order path under bursts; CPU requests are set for scheduling, memory is limited"
  "CKV_K8S_35" "the settings are read from the environment (pydantic settings); the values come from Secrets and never appear in the manifest"
  "CKV_K8S_38" "the operator talks to the Kubernetes API (RiskPolicies, ConfigMaps) with its own least-privilege service account"
  "CKV_K8S_8" "a helm test pod runs once and exits; its readiness and liveness are its exit status"
  "CKV_K8S_9" "a helm test pod runs once and exits; its readiness and liveness are its exit status" -}}
{{- range $i, $id := . }}
checkov.io/skip{{ add $i 1 }}: {{ printf "%s=%s" $id (index $reasons $id) | quote }}
{{- end }}
{{- end -}}

{{/* The engine's environment as the chart sets it (engine.extraEnv comes after it) */}}
{{- define "wojak.engineEnv" -}}
- name: WOJAK_ENGINE_SOCKET
  value: {{ include "wojak.socketPath" . | quote }}
- name: WOJAK_ENGINE_RISK_CONFIG
  value: /etc/wojak/risk/risk.yaml
- name: WOJAK_ENGINE_RISK_RELOAD_SECONDS
  value: {{ include "wojak.str" .Values.engine.riskReloadSeconds | quote }}
- name: WOJAK_STORE
  value: {{ .Values.engine.store | quote }}
- name: WOJAK_VENUE
  value: {{ .Values.engine.venue | quote }}
- name: WOJAK_ENGINE_LEASE_SECONDS
  value: {{ include "wojak.str" .Values.engine.leaseSeconds | quote }}
- name: WOJAK_ENGINE_RECONCILE_SECONDS
  value: {{ include "wojak.str" .Values.engine.reconcileSeconds | quote }}
- name: WOJAK_LOG_LEVEL
  value: {{ .Values.engine.logLevel | quote }}
- name: WOJAK_ENGINE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with .Values.engine.cluster }}
- name: WOJAK_ENGINE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.engine.escalation.sink }}
- name: WOJAK_ENGINE_ESCALATION_SINK
  value: {{ . | quote }}
{{- end }}
{{- with .Values.engine.escalation.webhookSecret.secretName }}
- name: WOJAK_ESCALATION_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.engine.escalation.webhookSecret.key }}
{{- end }}
{{- with .Values.engine.storeCredentials.secretName }}
- name: WOJAK_COUCHBASE_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.engine.storeCredentials.usernameKey }}
- name: WOJAK_COUCHBASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.engine.storeCredentials.passwordKey }}
{{- end }}
{{- if .Values.engine.allowInsecureTransport }}
- name: WOJAK_ALLOW_INSECURE_TRANSPORT
  value: "1"
{{- end }}
{{- end -}}

{{/* (list RENDERED_ENV EXTRA SETTING): the EXTRA entries, refused by SETTING's name where one
would replace a variable the chart sets (Kubernetes keeps the last of two, silently) or is one of
the test suite's fault switches (WOJAK_TEST_FAULTS arms WOJAK_ENGINE_CRASH_AT: a SIGKILL mid-order) */}}
{{- define "wojak.extraEnv" -}}
{{- $set := dict -}}
{{- range (index . 0 | fromYamlArray) }}{{ $_ := set $set .name true }}{{ end -}}
{{- range (index . 1) }}
{{- if hasKey $set .name }}{{ fail (printf "%s: %s is set by the chart; use its own value instead" (index $ 2) .name) }}{{ end }}
{{- if or (hasPrefix "WOJAK_TEST_" .name) (eq .name "WOJAK_ENGINE_CRASH_AT") }}{{ fail (printf "%s: %s is a test-only switch (crash and fault injection); a deployment cannot set it" (index $ 2) .name) }}{{ end }}
{{- end -}}
{{- with (index . 1) }}{{ toYaml . }}{{ end -}}
{{- end -}}
