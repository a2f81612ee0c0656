output "cluster_name" {
  description = "GKE cluster name (gcloud container clusters get-credentials ...)."
  value       = module.gke.cluster_name
}

output "orders_topic_id" {
  description = "Pub/Sub topic orders are published to."
  value       = module.pubsub.orders_topic_id
}

output "orders_subscription_id" {
  description = "Subscription wojak consumes."
  value       = module.pubsub.orders_subscription_id
}

output "dead_letter_subscription_id" {
  description = "Subscription retaining dead-lettered orders."
  value       = module.pubsub.dead_letter_subscription_id
}

output "wojak_google_service_account" {
  description = "Google service account the wojak pods act as."
  value       = module.pubsub.google_service_account_email
}

output "couchbase_connection_string" {
  description = "Store URL the engine uses."
  value       = module.couchbase.connection_string
}

output "wojak_values" {
  description = "Values passed to the wojak chart (no credentials)."
  value       = module.wojak.values
}
