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

variable "scopes" {
  type = object({
    home       = string
    written    = list(string)
    replicas   = list(string)
    collection = optional(string, "engine")
  })
  description = "The scoped layout of a multi-cloud deployment (null: one cluster, the wojak store in the bucket's default collection, no XDCR). `home`: this cluster's own scope, named after it, which its engines use; `written`: the scopes this cluster's engines write ([home], plus a peer's scope promoted here in a fail-over, or [] while its home is written elsewhere), replicated to every peer; `replicas`: the peers' scopes, received over XDCR and read-only here. Every scope holds one `collection`. Keep the set of all scopes stable: the operator deletes a managed scope (and its documents) that leaves it."
  default     = null

  validation {
    condition = var.scopes == null ? true : alltrue([
      for s in concat([var.scopes.home, var.scopes.collection], var.scopes.written, var.scopes.replicas) :
      can(regex("^[a-z][a-z0-9-]{0,29}$", s))
    ])
    error_message = "scopes: scope and collection names are 1-30 lower-case letters, digits and dashes, starting with a letter (the chart uses them as Kubernetes resource names too)."
  }

  validation {
    condition = var.scopes == null ? true : (
      length(setintersection(toset(var.scopes.written), toset(var.scopes.replicas))) == 0 &&
      length(distinct(var.scopes.written)) == length(var.scopes.written) &&
      length(distinct(var.scopes.replicas)) == length(var.scopes.replicas) &&
      contains(concat(var.scopes.written, var.scopes.replicas), var.scopes.home)
    )
    error_message = "scopes: a scope is either written here or a replica here, never both, and home is one of them."
  }
}

variable "xdcr_remote_clusters" {
  type = list(object({
    name          = string
    uuid          = string
    hostname      = string
    remote_bucket = string
    paused        = optional(bool, false)
  }))
  description = "Peer Couchbase clusters to replicate the scopes this cluster writes (scopes.written) to, one way. uuid is the peer CouchbaseCluster's status.clusterId, known after the peer's first apply; paused stops the replication without deleting it (fencing, fail-over)."
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
