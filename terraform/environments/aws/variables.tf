variable "region" {
  type        = string
  description = "AWS region of every resource."
  default     = "eu-west-1"
}

variable "name" {
  type        = string
  description = "Deployment name: prefix of the cluster and every resource (e.g. \"wojak-prod\")."
  default     = "wojak"
}

variable "vpc_id" {
  type        = string
  description = "Existing VPC for the cluster."
}

variable "private_subnet_ids" {
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
  description = "Extra tags on every AWS resource."
  default     = {}
}

variable "source_accounts" {
  type        = list(string)
  description = "Account patterns the source sidecar may trade (source.accounts: WOJAK_SIDECAR_ACCOUNTS), e.g. [\"desk-1\", \"desk-2-*\"]. Required by every broker source (the chart refuses to render without it); the HTTP source's keys file scopes its principals instead."
  default     = []
}
