variable "release_name" {
  type        = string
  description = "Helm release name of wojak."
  default     = "wojak"
}

variable "namespace" {
  type        = string
  description = "Namespace of the wojak release (created by this module)."
  default     = "wojak"
}

variable "chart_path" {
  type        = string
  description = "Path to the wojak Helm chart; null means the repository's charts/wojak."
  default     = null
}

variable "image_tag" {
  type        = string
  description = "Tag of the wojak images; null keeps the chart's default (its appVersion)."
  default     = null
}

variable "replica_count" {
  type        = number
  description = "Number of wojak pods (engine + source sidecar each); 0 fences the cluster's engines in a fail-over."
  default     = 2
}

variable "source_type" {
  type        = string
  description = "Broker the source sidecar consumes: http, rabbitmq, kafka, sqs, sns, pubsub or kinesis."

  validation {
    condition     = contains(["http", "rabbitmq", "kafka", "sqs", "sns", "pubsub", "kinesis"], var.source_type)
    error_message = "source_type must be one of http, rabbitmq, kafka, sqs, sns, pubsub, kinesis."
  }
}

variable "source_values" {
  type        = any
  description = "Broker-specific chart values merged under `source`, e.g. { sqs = { queueUrl = \"...\" } } or { pubsub = { subscription = \"...\" } }."
  default     = {}
}

variable "service_account_name" {
  type        = string
  description = "Kubernetes service account the chart creates for the wojak pods (the identity the cloud IAM trusts)."
  default     = "wojak"
}

variable "service_account_annotations" {
  type        = map(string)
  description = "Annotations of the service account: eks.amazonaws.com/role-arn, iam.gke.io/gcp-service-account or azure.workload.identity/client-id."
  default     = {}
}

variable "pod_labels" {
  type        = map(string)
  description = "Extra pod labels (AKS workload identity needs azure.workload.identity/use = \"true\")."
  default     = {}
}

variable "store_url" {
  type        = string
  description = "Engine store URL (engine.store), e.g. couchbase://wojak-cb-srv.couchbase.svc?bucket=wojak."
}

variable "store_scope" {
  type        = string
  description = "Couchbase scope the engines write (a multi-cloud cluster's own scope, named after it); appended to store_url as &scope=. null: the bucket's default collection."
  default     = null
}

variable "store_collection" {
  type        = string
  description = "Collection of the store inside store_scope; appended to store_url as &collection=."
  default     = null
}

variable "engine_cluster" {
  type        = string
  description = "This cluster's name (engine.cluster; the chart sets WOJAK_ENGINE_CLUSTER): the engines refuse accounts the risk config homes elsewhere. Needs store_scope. null: no homes (one cluster)."
  default     = null
}

variable "store_username" {
  type        = string
  description = "Couchbase user the engine authenticates as."
}

variable "store_password" {
  type        = string
  description = "Password of store_username; written only into a Kubernetes secret, never into chart values."
  sensitive   = true
}

variable "venue_url" {
  type        = string
  description = "Engine venue URL (engine.venue), e.g. lambda://FUNCTION?region=R, or the in-process sandbox."
  default     = "sandbox://in-process"
}

variable "node_selector" {
  type        = map(string)
  description = "nodeSelector of the wojak pods (the spot pool)."
  default     = {}
}

variable "tolerations" {
  type = list(object({
    key      = string
    operator = string
    value    = optional(string)
    effect   = string
  }))
  description = "Tolerations of the wojak pods (for tainted spot pools such as AKS's)."
  default     = []
}

variable "extra_values" {
  type        = any
  description = "Further chart values, deep-merged last at the top level (shallow merge per top-level key)."
  default     = {}
}

variable "risk_config" {
  type        = any
  description = "The engines' risk file as an object (every limit named, decimals as quoted strings); the chart renders it into a ConfigMap. null: risk_config_map."
  default     = null
}

variable "risk_config_map" {
  type        = string
  description = "ConfigMap (key risk.yaml) the engines read when risk_config is null: the one a RiskPolicy renders (<policy>-risk) or one you keep. The pods wait for it: the engines never run without limits."
  default     = "wojak-risk"
}

variable "source_accounts" {
  type        = list(string)
  description = "Account patterns the source sidecar may trade (source.accounts: WOJAK_SIDECAR_ACCOUNTS), e.g. [\"desk-1\", \"desk-2-*\"]. Required by every broker source (the chart refuses to render without it); the HTTP source's keys file scopes its principals instead."
  default     = []
}
