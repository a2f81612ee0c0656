output "cluster_name" {
  description = "GKE cluster name (gcloud container clusters get-credentials ...)."
  value       = module.gke.cluster_name
}

output "endpoint" {
  description = "GKE API endpoint (IP), for the root's Kubernetes and Helm providers."
  value       = module.gke.endpoint
}

output "ca_certificate" {
  description = "Base64 CA certificate of the GKE API, for the root's Kubernetes and Helm providers."
  value       = module.gke.ca_certificate
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
