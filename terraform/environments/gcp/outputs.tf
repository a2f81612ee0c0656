output "cluster_name" {
  description = "GKE cluster name (gcloud container clusters get-credentials ...)."
  value       = module.gcp_stack.cluster_name
}

output "orders_topic_id" {
  description = "Pub/Sub topic orders are published to."
  value       = module.gcp_stack.orders_topic_id
}

output "orders_subscription_id" {
  description = "Subscription wojak consumes."
  value       = module.gcp_stack.orders_subscription_id
}

output "dead_letter_subscription_id" {
  description = "Subscription retaining dead-lettered orders."
  value       = module.gcp_stack.dead_letter_subscription_id
}

output "wojak_google_service_account" {
  description = "Google service account the wojak pods act as."
  value       = module.gcp_stack.wojak_google_service_account
}

output "couchbase_connection_string" {
  description = "Store URL the engine uses."
  value       = module.gcp_stack.couchbase_connection_string
}

output "wojak_values" {
  description = "Values passed to the wojak chart (no credentials)."
  value       = module.gcp_stack.wojak_values
}
