variable "name" {
  type        = string
  description = "Prefix of every resource name (for example \"wojak-prod\")."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}$", var.name))
    error_message = "name must be 2-41 lowercase letters, digits or dashes and start with a letter."
  }
}

variable "sandbox_lambda_zip" {
  type        = string
  description = "Path to the sandbox broker deployment package produced by `wojak sandbox package`."
}

variable "sandbox_lambda_runtime" {
  type        = string
  description = "Python runtime of the sandbox broker Lambda (python3.11 or newer)."
  default     = "python3.12"

  validation {
    condition     = contains(["python3.11", "python3.12", "python3.13"], var.sandbox_lambda_runtime)
    error_message = "sandbox_lambda_runtime must be python3.11, python3.12 or python3.13."
  }
}

variable "sandbox_reserved_concurrency" {
  type        = number
  description = "Reserved concurrent executions of the sandbox broker Lambda (caps its cost and protects the account's pool)."
  default     = 50
}

variable "sandbox_timeout_seconds" {
  type        = number
  description = "Timeout of one sandbox broker invocation, in seconds."
  default     = 10
}

variable "sandbox_memory_mb" {
  type        = number
  description = "Memory of the sandbox broker Lambda in MB."
  default     = 256
}

variable "sandbox_environment" {
  type        = map(string)
  description = "Environment variables of the sandbox broker Lambda (for example fill/reject probabilities and seed). Encrypted with the project KMS key."
  default     = {}
}

variable "queue_max_receive_count" {
  type        = number
  description = "Deliveries of an order message before SQS moves it to the dead-letter queue."
  default     = 5
}

variable "queue_visibility_timeout_seconds" {
  type        = number
  description = "SQS visibility timeout: how long a received order stays invisible before redelivery."
  default     = 30
}

variable "kinesis_retention_hours" {
  type        = number
  description = "Retention of the Kinesis order stream in hours."
  default     = 24
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Lambda CloudWatch log group in days."
  default     = 365
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA)."
}

variable "oidc_issuer" {
  type        = string
  description = "EKS OIDC issuer without the https:// scheme, used in the IRSA trust policy condition keys."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the wojak release."
  default     = "wojak"
}

variable "service_account_name" {
  type        = string
  description = "Kubernetes service account of the wojak pods; the only identity allowed to assume the IRSA role."
  default     = "wojak"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
