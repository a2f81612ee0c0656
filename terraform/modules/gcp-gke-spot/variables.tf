variable "project_id" {
  type        = string
  description = "GCP project that owns the cluster."
}

variable "region" {
  type        = string
  description = "Region of the (regional) GKE cluster and its subnetwork."
}

variable "cluster_name" {
  type        = string
  description = "Name of the GKE cluster; also the prefix of the network resources and the node service account."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,28}$", var.cluster_name))
    error_message = "cluster_name must be 2-29 lowercase letters, digits or dashes and start with a letter."
  }
}

variable "node_locations" {
  type        = list(string)
  description = "Zones of the node pools; empty means every zone of the region."
  default     = []
}

variable "subnet_cidr" {
  type        = string
  description = "Primary CIDR of the node subnetwork."
  default     = "10.20.0.0/20"
}

variable "pods_cidr" {
  type        = string
  description = "Secondary CIDR for pod IPs (VPC-native cluster)."
  default     = "10.24.0.0/14"
}

variable "services_cidr" {
  type        = string
  description = "Secondary CIDR for service IPs."
  default     = "10.28.0.0/20"
}

variable "master_ipv4_cidr_block" {
  type        = string
  description = "/28 CIDR of the private control plane endpoint."
  default     = "172.16.0.0/28"
}

variable "master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Networks allowed to reach the Kubernetes API (where Terraform and operators run)."
  default = [{
    cidr_block   = "10.0.0.0/8"
    display_name = "internal"
  }]
}

variable "enable_private_endpoint" {
  type        = bool
  description = "Serve the Kubernetes API on its private address only (run Terraform from inside the VPC when true)."
  default     = true
}

variable "release_channel" {
  type        = string
  description = "GKE release channel (RAPID, REGULAR or STABLE)."
  default     = "REGULAR"
}

variable "spot_machine_type" {
  type        = string
  description = "Machine type of the spot node pool (wojak pods, Couchbase query and index)."
  default     = "e2-standard-4"
}

variable "spot_min_nodes" {
  type        = number
  description = "Minimum nodes per zone in the spot pool."
  default     = 1
}

variable "spot_max_nodes" {
  type        = number
  description = "Maximum nodes per zone in the spot pool."
  default     = 5
}

variable "on_demand_machine_type" {
  type        = string
  description = "Machine type of the on-demand pool that hosts the Couchbase data service."
  default     = "n2-highmem-4"
}

variable "on_demand_nodes_per_zone" {
  type        = number
  description = "Fixed number of nodes per zone in the on-demand Couchbase data pool."
  default     = 1
}

variable "disk_size_gb" {
  type        = number
  description = "Boot disk size of every node in GB."
  default     = 50
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the cluster (set false before `terraform destroy`)."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels added to the cluster and nodes."
  default     = {}
}

variable "xdcr_source_cidrs" {
  type        = list(string)
  description = "Private CIDRs of peer clusters (reached over VPN or interconnect) allowed to open Couchbase XDCR connections; empty opens nothing."
  default     = []
}
