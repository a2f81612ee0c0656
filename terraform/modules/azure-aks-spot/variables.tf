variable "cluster_name" {
  type        = string
  description = "Name of the AKS cluster; also the prefix of the identities and the log workspace."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}$", var.cluster_name))
    error_message = "cluster_name must be 2-41 lowercase letters, digits or dashes and start with a letter."
  }
}

variable "resource_group_name" {
  type        = string
  description = "Existing resource group the cluster and its identities go into."
}

variable "location" {
  type        = string
  description = "Azure region (for example \"westeurope\")."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes version of the control plane; null picks the region's default."
  default     = null
}

variable "admin_group_object_ids" {
  type        = list(string)
  description = "Entra ID group object IDs given cluster-admin through Azure RBAC (local accounts are disabled)."
  default     = []
}

variable "private_cluster_enabled" {
  type        = bool
  description = "Give the API server a private endpoint only (run Terraform from inside the VNet when true)."
  default     = true
}

variable "system_vm_size" {
  type        = string
  description = "VM size of the on-demand system pool (critical add-ons only). Must support ephemeral OS disks of os_disk_size_gb."
  default     = "Standard_D4ds_v5"
}

variable "system_node_count" {
  type        = number
  description = "Minimum nodes in the system pool (autoscaled up to twice this)."
  default     = 2
}

variable "spot_vm_size" {
  type        = string
  description = "VM size of the Spot pool (wojak pods, Couchbase query and index)."
  default     = "Standard_D4ds_v5"
}

variable "spot_max_price" {
  type        = number
  description = "Highest hourly price in USD for a Spot VM; -1 pays up to the on-demand price and is never evicted for price."
  default     = -1
}

variable "spot_eviction_policy" {
  type        = string
  description = "What happens to an evicted Spot VM: Delete (no disk cost) or Deallocate."
  default     = "Delete"

  validation {
    condition     = contains(["Delete", "Deallocate"], var.spot_eviction_policy)
    error_message = "spot_eviction_policy must be Delete or Deallocate."
  }
}

variable "spot_min_count" {
  type        = number
  description = "Minimum nodes in the Spot pool."
  default     = 1
}

variable "spot_max_count" {
  type        = number
  description = "Maximum nodes in the Spot pool."
  default     = 10
}

variable "on_demand_vm_size" {
  type        = string
  description = "VM size of the on-demand pool that hosts the Couchbase data service."
  default     = "Standard_E4ds_v5"
}

variable "on_demand_node_count" {
  type        = number
  description = "Minimum nodes in the on-demand Couchbase data pool."
  default     = 3
}

variable "os_disk_size_gb" {
  type        = number
  description = "Ephemeral OS disk size in GB (must fit the VM size's cache or temp disk)."
  default     = 100
}

variable "zones" {
  type        = list(string)
  description = "Availability zones of the node pools."
  default     = ["1", "2", "3"]
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Log Analytics workspace that receives container insights."
  default     = 90
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
