output "aws_cluster_name" {
  description = "EKS cluster name."
  value       = module.aws_stack.cluster_name
}

output "gcp_cluster_name" {
  description = "GKE cluster name."
  value       = module.gcp_stack.cluster_name
}

output "aws_orders_queue_url" {
  description = "SQS queue the AWS release consumes."
  value       = module.aws_stack.orders_queue_url
}

output "gcp_orders_subscription_id" {
  description = "Pub/Sub subscription the GCP release consumes."
  value       = module.gcp_stack.orders_subscription_id
}

output "aws_couchbase_connection_string" {
  description = "Store URL of the AWS release."
  value       = module.aws_stack.couchbase_connection_string
}

output "gcp_couchbase_connection_string" {
  description = "Store URL of the GCP release."
  value       = module.gcp_stack.couchbase_connection_string
}

output "xdcr_enabled" {
  description = "Whether the XDCR replications are configured."
  value       = var.xdcr_enabled
}

output "scope_writers" {
  description = "Scope => the one cluster whose engines write it (its home, or the survivor it was promoted to)."
  value       = module.topology.writers
}

output "xdcr_replications" {
  description = "The replications the topology implies (once xdcr_enabled): source, target, scopes carried one way, paused."
  value       = module.topology.replications
}
