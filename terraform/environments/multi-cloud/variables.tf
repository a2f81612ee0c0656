variable "name" {
  type        = string
  description = "Deployment name used as prefix in both clouds (short: GCP service account ids are limited)."
  default     = "wojak"
}

# ----------------------------------------------------------------- AWS ---

variable "aws_region" {
  type        = string
  description = "AWS region."
  default     = "eu-west-1"
}

variable "aws_vpc_id" {
  type        = string
  description = "Existing AWS VPC for EKS (routed to the GCP VPC over a site-to-site VPN)."
}

variable "aws_vpc_cidr" {
  type        = string
  description = "CIDR of the AWS VPC, allowed into the GCP cluster for XDCR."
}

variable "aws_private_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the EKS cluster (two or more AZs, NAT egress)."
}

variable "aws_spot_instance_types" {
  type        = list(string)
  description = "Instance types of the EKS SPOT node group."
  default     = ["m6i.large", "m6a.large", "m5.large", "m5a.large", "m7i.large"]
}

variable "sandbox_lambda_zip" {
  type        = string
  description = "Path of the zip built by `wojak sandbox package`."
}

variable "aws_source_type" {
  type        = string
  description = "Broker the AWS wojak release consumes: sqs, sns or kinesis."
  default     = "sqs"
}

# ----------------------------------------------------------------- GCP ---

variable "gcp_project_id" {
  type        = string
  description = "GCP project."
}

variable "gcp_region" {
  type        = string
  description = "GCP region."
  default     = "europe-west1"
}

variable "gcp_subnet_cidr" {
  type        = string
  description = "Primary CIDR of the GKE node subnetwork (allowed into the AWS cluster for XDCR)."
  default     = "10.20.0.0/20"
}

variable "gcp_pods_cidr" {
  type        = string
  description = "Pod CIDR of the GKE cluster (XDCR traffic leaves GKE from pod IPs)."
  default     = "10.24.0.0/14"
}

variable "gcp_master_authorized_networks" {
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  description = "Networks allowed to reach the GKE API."
  default = [{
    cidr_block   = "10.0.0.0/8"
    display_name = "internal"
  }]
}

variable "gcp_deletion_protection" {
  type        = bool
  description = "Protect the GKE cluster from deletion."
  default     = true
}

# ---------------------------------------------------------------- XDCR ---

variable "xdcr_enabled" {
  type        = bool
  description = "Wire XDCR between the two Couchbase clusters: each replicates the scope it writes, one way, to the other (second apply: needs both cluster UUIDs)."
  default     = false
}

variable "failover" {
  type = object({
    engines_stopped = optional(set(string), [])
    isolated        = optional(set(string), [])
    promoted        = optional(map(string), {})
  })
  description = "Fail-over state, one step per apply (terraform/README.md, \"Fail-over\"): engines_stopped = clusters whose wojak engines are scaled to zero (fenced); isolated = clusters that neither send nor receive XDCR; promoted = scope => surviving cluster now writing it, e.g. { aws = \"gcp\" }."
  default     = {}

  validation {
    condition = alltrue([
      for c in concat(tolist(var.failover.engines_stopped), tolist(var.failover.isolated), keys(var.failover.promoted), values(var.failover.promoted)) :
      contains(["aws", "gcp"], c)
    ])
    error_message = "failover names only the clusters aws and gcp."
  }
}

variable "aws_couchbase_uuid" {
  type        = string
  description = "status.clusterId of the AWS CouchbaseCluster (kubectl -n couchbase get couchbasecluster wojak-cb -o jsonpath='{.status.clusterId}')."
  default     = ""
}

variable "gcp_couchbase_uuid" {
  type        = string
  description = "status.clusterId of the GCP CouchbaseCluster."
  default     = ""
}

variable "aws_xdcr_hostname" {
  type        = string
  description = "Address (host or host:port) of the AWS cluster's internal XDCR load balancer, as reachable from GCP."
  default     = ""
}

variable "gcp_xdcr_hostname" {
  type        = string
  description = "Address (host or host:port) of the GCP cluster's internal XDCR load balancer, as reachable from AWS."
  default     = ""
}

# --------------------------------------------------------------- wojak ---

variable "wojak_replica_count" {
  type        = number
  description = "wojak pods per cluster while its engines are not fenced."
  default     = 2
}

variable "wojak_chart_path" {
  type        = string
  description = "Path of the wojak Helm chart; null uses the repository's charts/wojak."
  default     = null
}

variable "couchbase_chart_version" {
  type        = string
  description = "Version of the couchbase-operator chart (both clusters)."
  default     = "2.92.1"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags (AWS) / labels (GCP) on every resource."
  default     = {}
}

variable "source_accounts" {
  type        = list(string)
  description = "Account patterns the source sidecar may trade (source.accounts: WOJAK_SIDECAR_ACCOUNTS), e.g. [\"desk-1\", \"desk-2-*\"]. Required by every broker source (the chart refuses to render without it); the HTTP source's keys file scopes its principals instead."
  default     = []
}
