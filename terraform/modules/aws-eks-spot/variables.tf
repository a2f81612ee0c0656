variable "cluster_name" {
  type        = string
  description = "Name of the EKS cluster; also the prefix of every resource this module creates."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}$", var.cluster_name))
    error_message = "cluster_name must be 2-39 lowercase letters, digits or dashes and start with a letter."
  }
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the EKS control plane (for example \"1.31\")."
  default     = "1.31"
}

variable "vpc_id" {
  type        = string
  description = "ID of the existing VPC the cluster runs in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnet IDs (at least two availability zones, with a NAT route for image pulls) for the control plane ENIs and the node groups."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  type        = bool
  description = "Expose the Kubernetes API on a public endpoint. Off by default: run Terraform from inside the VPC (bastion, VPN, CI runner) or turn this on together with endpoint_public_access_cidrs."
  default     = false
}

variable "endpoint_public_access_cidrs" {
  type        = list(string)
  description = "CIDR blocks allowed to reach the public API endpoint when endpoint_public_access is true."
  default     = ["10.0.0.0/8"]
}

variable "spot_instance_types" {
  type        = list(string)
  description = "Instance types for the SPOT node group (several similar sizes widen the spot pools EKS can draw from)."
  default     = ["m6i.large", "m6a.large", "m5.large", "m5a.large", "m7i.large"]
}

variable "spot_min_size" {
  type        = number
  description = "Minimum number of nodes in the SPOT node group."
  default     = 2
}

variable "spot_desired_size" {
  type        = number
  description = "Initial number of nodes in the SPOT node group (later changes are left to the cluster autoscaler)."
  default     = 3
}

variable "spot_max_size" {
  type        = number
  description = "Maximum number of nodes in the SPOT node group."
  default     = 10
}

variable "on_demand_instance_types" {
  type        = list(string)
  description = "Instance types for the ON_DEMAND node group that hosts the Couchbase data service (the source of truth)."
  default     = ["r6i.large"]
}

variable "on_demand_min_size" {
  type        = number
  description = "Minimum number of nodes in the ON_DEMAND Couchbase data node group."
  default     = 3
}

variable "on_demand_desired_size" {
  type        = number
  description = "Initial number of nodes in the ON_DEMAND Couchbase data node group."
  default     = 3
}

variable "on_demand_max_size" {
  type        = number
  description = "Maximum number of nodes in the ON_DEMAND Couchbase data node group."
  default     = 5
}

variable "node_disk_size_gib" {
  type        = number
  description = "Size in GiB of each node's encrypted gp3 root volume."
  default     = 50
}

variable "log_retention_days" {
  type        = number
  description = "Retention in days of the control plane CloudWatch log group."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
