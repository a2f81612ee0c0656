variable "subscription_id" {
  type        = string
  description = "Azure subscription to deploy into."
}

variable "location" {
  type        = string
  description = "Azure region."
  default     = "westeurope"
}

variable "name" {
  type        = string
  description = "Deployment name: prefix of the resource group, cluster and identities."
  default     = "wojak"
}

variable "admin_group_object_ids" {
  type        = list(string)
  description = "Entra ID groups that get cluster-admin (Terraform's identity must be in one, or hold an AKS RBAC role)."
}

variable "private_cluster_enabled" {
  type        = bool
  description = "Private-only API server (apply from inside the VNet when true)."
  default     = true
}

variable "spot_vm_size" {
  type        = string
  description = "VM size of the Spot pool."
  default     = "Standard_D4ds_v5"
}

variable "spot_max_price" {
  type        = number
  description = "Spot max price in USD/hour; -1 caps at the on-demand price."
  default     = -1
}

variable "on_demand_vm_size" {
  type        = string
  description = "VM size of the on-demand Couchbase data pool."
  default     = "Standard_E4ds_v5"
}

variable "source_type" {
  type        = string
  description = "Broker wojak consumes on Azure: http, rabbitmq or kafka."
  default     = "http"
}

variable "source_values" {
  type        = any
  description = "Broker-specific chart values under `source` (e.g. { kafka = { bootstrapServers = \"...\", topic = \"orders\" } })."
  default     = {}
}

variable "venue_url" {
  type        = string
  description = "Engine venue URL (the in-process sandbox by default)."
  default     = "sandbox://in-process"
}

variable "wojak_chart_path" {
  type        = string
  description = "Path of the wojak Helm chart; null uses the repository's charts/wojak."
  default     = null
}

variable "wojak_image_tag" {
  type        = string
  description = "wojak image tag; null keeps the chart default."
  default     = null
}

variable "couchbase_chart_version" {
  type        = string
  description = "Version of the couchbase-operator chart."
  default     = "2.92.1"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every Azure resource."
  default     = {}
}

variable "source_accounts" {
  type        = list(string)
  description = "Account patterns the source sidecar may trade (source.accounts: WOJAK_SIDECAR_ACCOUNTS), e.g. [\"desk-1\", \"desk-2-*\"]. Required by every broker source (the chart refuses to render without it); the HTTP source's keys file scopes its principals instead."
  default     = []
}
