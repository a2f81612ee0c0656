variable "namespace" {
  type        = string
  description = "Namespace for the Couchbase Autonomous Operator and the cluster (created by this module)."
  default     = "couchbase"
}

variable "release_name" {
  type        = string
  description = "Helm release name of the couchbase-operator chart."
  default     = "couchbase"
}

variable "chart_version" {
  type        = string
  description = "Version of the couchbase-operator chart from https://couchbase-partners.github.io/helm-charts/."
  default     = "2.92.1"
}

variable "cluster_name" {
  type        = string
  description = "Name of the CouchbaseCluster resource (and prefix of its services and pods)."
  default     = "wojak-cb"
}

variable "server_image" {
  type        = string
  description = "Couchbase Server image (Enterprise Edition is required for XDCR)."
  default     = "couchbase/server:7.6.5"
}

variable "bucket_name" {
  type        = string
  description = "Bucket holding wojak's orderbook, tradebook, ticks, positions, counters and outbox."
  default     = "wojak"

  validation {
    condition     = var.bucket_name != "default" && can(regex("^[a-z0-9][a-z0-9_.-]{0,99}$", var.bucket_name))
    error_message = "bucket_name must be a valid Couchbase bucket name other than \"default\" (the chart's example bucket is removed)."
  }
}

variable "bucket_memory_quota" {
  type        = string
  description = "Per data node memory quota of the wojak bucket (Kubernetes quantity)."
  default     = "1Gi"
}

variable "bucket_replicas" {
  type        = number
  description = "Replicas of every document in the bucket (0-3)."
  default     = 1
}

variable "data_size" {
  type        = number
  description = "Number of data service pods (on the on-demand pool; the source of truth)."
  default     = 3
}

variable "query_size" {
  type        = number
  description = "Number of query service pods (on spot; stateless)."
  default     = 2
}

variable "index_size" {
  type        = number
  description = "Number of index service pods (on spot; indexes rebuild after a reclaim)."
  default     = 2
}

variable "data_service_memory_quota" {
  type        = string
  description = "Data service memory quota per data pod."
  default     = "2Gi"
}

variable "index_service_memory_quota" {
  type        = string
  description = "Index service memory quota per index pod."
  default     = "1Gi"
}

variable "query_service_memory_quota" {
  type        = string
  description = "Query service memory quota per query pod."
  default     = "1Gi"
}

variable "storage_class_name" {
  type        = string
  description = "StorageClass of the data pods' persistent volumes."
}

variable "data_volume_size" {
  type        = string
  description = "Size of each data pod's persistent volume."
  default     = "50Gi"
}

variable "data_node_selector" {
  type        = map(string)
  description = "nodeSelector placing data pods on the on-demand pool."
}

variable "data_tolerations" {
  type = list(object({
    key      = string
    operator = string
    value    = optional(string)
    effect   = string
  }))
  description = "Tolerations letting data pods onto the tainted on-demand pool."
}

variable "spot_node_selector" {
  type        = map(string)
  description = "nodeSelector placing query, index and operator pods on spot nodes."
}

variable "spot_tolerations" {
  type = list(object({
    key      = string
    operator = string
    value    = optional(string)
    effect   = string
  }))
  description = "Tolerations for spot node taints (AKS taints spot nodes; EKS and GKE do not)."
  default     = []
}

variable "app_username" {
  type        = string
  description = "Couchbase RBAC user wojak connects as (data_reader + data_writer on the bucket only)."
  default     = "wojak"
}

variable "admin_username" {
  type        = string
  description = "Username of the Couchbase cluster administrator."
  default     = "Administrator"
}

variable "expose_xdcr" {
  type        = bool
  description = "Expose the XDCR ports through per-pod services so peer clusters in other clouds can replicate."
  default     = false
}

variable "xdcr_service_template" {
  type        = any
  description = "Service template (a Kubernetes Service spec fragment plus annotations) for the exposed XDCR services, e.g. an internal LoadBalancer."
  default = {
    spec = {
      type = "LoadBalancer"
    }
  }
}

variable "xdcr_remote_clusters" {
  type = list(object({
    name          = string
    uuid          = string
    hostname      = string
    remote_bucket = string
  }))
  description = "Peer Couchbase clusters to replicate the bucket to. uuid is the peer CouchbaseCluster's status.clusterId, known after the peer's first apply."
  default     = []
}

variable "xdcr_remote_passwords" {
  type        = map(string)
  description = "Password of the peer's `xdcr` user, keyed by xdcr_remote_clusters[].name."
  default     = {}
  sensitive   = true
}

variable "xdcr_remote_username" {
  type        = string
  description = "Username this cluster uses on its peers for XDCR."
  default     = "xdcr"
}
