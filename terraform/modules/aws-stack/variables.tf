variable "name" {
  type        = string
  description = "Deployment name: prefix of the order sources, the sandbox Lambda, their KMS key and IAM roles."
}

variable "cluster_name" {
  type        = string
  description = "Name of the EKS cluster (the deployment name alone, or suffixed when several clouds share it)."
}

variable "region" {
  type        = string
  description = "AWS region of the provider passed in; used in the wojak source and venue URLs."
}

variable "vpc_id" {
  type        = string
  description = "Existing VPC for the cluster."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets (two or more AZs, NAT egress) for the control plane ENIs and the nodes."
}

variable "kubernetes_version" {
  type        = string
  description = "EKS Kubernetes version."
  default     = "1.31"
}

variable "endpoint_public_access" {
  type        = bool
  description = "Expose the EKS API publicly (restricted to endpoint_public_access_cidrs). Off: apply from inside the VPC."
  default     = false
}

variable "endpoint_public_access_cidrs" {
  type        = list(string)
  description = "CIDRs allowed to the public EKS API when endpoint_public_access is true."
  default     = ["10.0.0.0/8"]
}

variable "spot_instance_types" {
  type        = list(string)
  description = "Instance types of the SPOT node group."
  default     = ["m6i.large", "m6a.large", "m5.large", "m5a.large", "m7i.large"]
}

variable "on_demand_instance_types" {
  type        = list(string)
  description = "Instance types of the ON_DEMAND Couchbase data node group."
  default     = ["r6i.large"]
}

variable "sandbox_lambda_zip" {
  type        = string
  description = "Path of the zip built by `wojak sandbox package` (the sandbox broker Lambda)."
}

variable "sandbox_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the sandbox broker Lambda."
  default     = 50
}

variable "source_type" {
  type        = string
  description = "Broker wojak consumes on AWS: sqs, sns (via its SQS fan-out), kinesis, or http/rabbitmq/kafka."
  default     = "sqs"
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

variable "enable_node_termination_handler" {
  type        = bool
  description = "Install AWS Node Termination Handler (IMDS mode) to cordon and drain spot nodes on interruption notices."
  default     = true
}

variable "node_termination_handler_chart_version" {
  type        = string
  description = "Version of the aws-node-termination-handler chart (https://aws.github.io/eks-charts)."
  default     = "0.21.0"
}

variable "couchbase_chart_version" {
  type        = string
  description = "Version of the couchbase-operator chart."
  default     = "2.92.1"
}

variable "tags" {
  type        = map(string)
  description = "Tags on every AWS resource of the stack (the root adds them as provider default tags too)."
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
