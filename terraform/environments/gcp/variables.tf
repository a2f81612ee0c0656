variable "project_id" {
  type        = string
  description = "GCP project to deploy into."
}

variable "region" {
  type        = string
  description = "GCP region of the cluster, network, key ring."
  default     = "europe-west1"
}

variable "name" {
  type        = string
  description = "Deployment name: prefix of the cluster and every resource (short: service account ids are limited)."
  default     = "wojak"
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Networks allowed to reach the GKE API (where Terraform runs)."
  default = [{
    cidr_block   = "10.0.0.0/8"
    display_name = "internal"
  }]
}

variable "enable_private_endpoint" {
  type        = bool
  description = "Private-only GKE API endpoint (apply from inside the VPC when true)."
  default     = true
}

variable "spot_machine_type" {
  type        = string
  description = "Machine type of the spot pool."
  default     = "e2-standard-4"
}

variable "on_demand_machine_type" {
  type        = string
  description = "Machine type of the on-demand Couchbase data pool."
  default     = "n2-highmem-4"
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the GKE cluster from deletion (set false, apply, then destroy)."
  default     = true
}

variable "source_type" {
  type        = string
  description = "Broker wojak consumes on GCP: pubsub, or http/rabbitmq/kafka."
  default     = "pubsub"
}

variable "venue_url" {
  type        = string
  description = "Engine venue URL on GCP (the in-process sandbox by default; the sandbox Lambda lives on AWS)."
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

variable "labels" {
  type        = map(string)
  description = "Extra labels on every resource that takes labels."
  default     = {}
}

variable "source_accounts" {
  type        = list(string)
  description = "Account patterns the source sidecar may trade (source.accounts: WOJAK_SIDECAR_ACCOUNTS), e.g. [\"desk-1\", \"desk-2-*\"]. Required by every broker source (the chart refuses to render without it); the HTTP source's keys file scopes its principals instead."
  default     = []
}
