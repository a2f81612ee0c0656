output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA bundle of the EKS API, for the root's Kubernetes and Helm providers."
  value       = module.eks.cluster_certificate_authority_data
}

output "node_security_group_id" {
  description = "Cluster security group shared by the control plane and the managed nodes."
  value       = module.eks.node_security_group_id
}

output "orders_queue_url" {
  description = "SQS queue orders are sent to."
  value       = module.services.orders_queue_url
}

output "orders_dlq_url" {
  description = "Dead-letter queue of the orders queue."
  value       = module.services.orders_dlq_url
}

output "orders_topic_arn" {
  description = "SNS topic orders can be published to (fans out into the queue)."
  value       = module.services.orders_topic_arn
}

output "orders_stream_name" {
  description = "Kinesis stream orders can be put on."
  value       = module.services.orders_stream_name
}

output "sandbox_function_name" {
  description = "Sandbox broker Lambda name."
  value       = module.services.sandbox_function_name
}

output "wojak_role_arn" {
  description = "IRSA role of the wojak service account."
  value       = module.services.wojak_role_arn
}

output "couchbase_connection_string" {
  description = "Store URL the engine uses."
  value       = module.couchbase.connection_string
}

output "wojak_cluster" {
  description = "This cluster's name across clouds (WOJAK_ENGINE_CLUSTER, its scope); null when unscoped."
  value       = var.wojak_cluster
}

output "couchbase_written_scopes" {
  description = "Scopes this cluster's engines write and replicate to peers."
  value       = module.couchbase.written_scopes
}

output "couchbase_replica_scopes" {
  description = "Peers' scopes held here read-only."
  value       = module.couchbase.replica_scopes
}

output "couchbase_xdcr_password" {
  description = "Generated password of this Couchbase cluster's XDCR user, to hand to peer clusters."
  value       = module.couchbase.xdcr_password
  sensitive   = true
}

output "wojak_values" {
  description = "Values passed to the wojak chart (no credentials)."
  value       = module.wojak.values
}
