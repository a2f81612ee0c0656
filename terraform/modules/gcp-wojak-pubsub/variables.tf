variable "project_id" {
  type        = string
  description = "GCP project that owns the topics, subscriptions, key and service account."
}

variable "region" {
  type        = string
  description = "Location of the KMS key ring (the region of the cluster)."
}

variable "name" {
  type        = string
  description = "Prefix of every resource name (for example \"wojak-prod\")."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or dashes and start with a letter (service account ids are short)."
  }
}

variable "ack_deadline_seconds" {
  type        = number
  description = "Seconds the sidecar has to ack an order before Pub/Sub redelivers it."
  default     = 30
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of an order before Pub/Sub forwards it to the dead-letter topic (5-100)."
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "retry_minimum_backoff" {
  type        = string
  description = "Minimum redelivery backoff of a nacked order (duration, e.g. \"1s\")."
  default     = "1s"
}

variable "retry_maximum_backoff" {
  type        = string
  description = "Maximum redelivery backoff of a nacked order (duration, at most \"600s\")."
  default     = "60s"
}

variable "message_retention_duration" {
  type        = string
  description = "How long the subscriptions keep unacked messages (duration, at most \"604800s\")."
  default     = "604800s"
}

variable "key_rotation_period" {
  type        = string
  description = "Rotation period of the Pub/Sub CMEK key (at most 90 days)."
  default     = "7776000s"
}

variable "workload_identity_pool" {
  type        = string
  description = "Workload Identity pool of the GKE cluster (PROJECT.svc.id.goog)."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the wojak release."
  default     = "wojak"
}

variable "service_account_name" {
  type        = string
  description = "Kubernetes service account of the wojak pods; the only identity bound to the Google service account."
  default     = "wojak"
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}
