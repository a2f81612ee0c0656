variable "project_id" {
  type        = string
  description = "GCP project to deploy into."
}

variable "region" {
  type        = string
  description = "GCP region of the cluster, network, key ring."
}

variable "name" {
  type        = string
  description = "Deployment name: prefix of the Pub/Sub resources, key ring and service accounts (short: service account ids are limited)."
}

variable "cluster_name" {
  type        = string
  description = "Name of the GKE cluster (the deployment name alone, or suffixed when several clouds share it)."
}

variable "subnet_cidr" {
  type        = string
  description = "Primary CIDR of the GKE node subnetwork."
  default     = "10.20.0.0/20"
}

variable "pods_cidr" {
  type        = string
  description = "Pod CIDR of the GKE cluster (XDCR traffic leaves GKE from pod IPs)."
  default     = "10.24.0.0/14"
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

variable "xdcr_source_cidrs" {
  type        = list(string)
  description = "CIDRs of peer Couchbase clusters allowed into the GKE nodes on the XDCR ports (empty: no rule)."
  default     = []
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

variable "cluster_labels" {
  type        = map(string)
  description = "Extra labels of the GKE cluster (the cluster module adds its own)."
  default     = {}
}

variable "labels" {
  type        = map(string)
  description = "Labels on the Pub/Sub topics, subscriptions and KMS key."
  default     = {}
}

variable "expose_xdcr" {
  type        = bool
  description = "Expose the Couchbase XDCR ports on internal load balancers so a peer cluster in another cloud can replicate."
  default     = false
}

variable "xdcr_remote_clusters" {
  type = list(object({
    name          = string
    uuid          = string
    hostname      = string
    remote_bucket = string
    paused        = optional(bool, false)
  }))
  description = "Peer Couchbase clusters to replicate the scopes this cluster writes to, one way (see modules/couchbase); needs wojak_cluster."
  default     = []
}

variable "xdcr_remote_passwords" {
  type        = map(string)
  description = "Password of each peer's `xdcr` user, keyed by xdcr_remote_clusters[].name."
  default     = {}
  sensitive   = true
}

# ------------------------------------------------- one writer per scope ---

variable "wojak_cluster" {
  type        = string
  description = "This cluster's name across clouds: the wojak engines' WOJAK_ENGINE_CLUSTER (the `home` of accounts in the risk config) and the Couchbase scope they write. null: a single cluster, the store in the bucket's default collection, no homes."
  default     = null
}

variable "written_scopes" {
  type        = list(string)
  description = "Scopes this cluster's engines write (null: [wojak_cluster]); a fail-over adds a peer's scope or empties it (see modules/xdcr-topology)."
  default     = null
}

variable "replica_scopes" {
  type        = list(string)
  description = "Peers' scopes this cluster holds read-only, received over XDCR (with wojak_cluster)."
  default     = []
}

variable "wojak_replica_count" {
  type        = number
  description = "Number of wojak pods; 0 fences this cluster's engines (fail-over)."
  default     = 2
}

variable "source_accounts" {
  type        = list(string)
  description = "Account patterns the source sidecar may trade (source.accounts: WOJAK_SIDECAR_ACCOUNTS), e.g. [\"desk-1\", \"desk-2-*\"]. Required by every broker source (the chart refuses to render without it); the HTTP source's keys file scopes its principals instead."
  default     = []
}
