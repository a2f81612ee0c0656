output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = module.aws_stack.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.aws_stack.cluster_endpoint
}

output "orders_queue_url" {
  description = "SQS queue orders are sent to."
  value       = module.aws_stack.orders_queue_url
}

output "orders_dlq_url" {
  description = "Dead-letter queue of the orders queue."
  value       = module.aws_stack.orders_dlq_url
}

output "orders_topic_arn" {
  description = "SNS topic orders can be published to (fans out into the queue)."
  value       = module.aws_stack.orders_topic_arn
}

output "orders_stream_name" {
  description = "Kinesis stream orders can be put on."
  value       = module.aws_stack.orders_stream_name
}

output "sandbox_function_name" {
  description = "Sandbox broker Lambda name."
  value       = module.aws_stack.sandbox_function_name
}

output "wojak_role_arn" {
  description = "IRSA role of the wojak service account."
  value       = module.aws_stack.wojak_role_arn
}

output "couchbase_connection_string" {
  description = "Store URL the engine uses."
  value       = module.aws_stack.couchbase_connection_string
}

output "wojak_values" {
  description = "Values passed to the wojak chart (no credentials)."
  value       = module.aws_stack.wojak_values
}
