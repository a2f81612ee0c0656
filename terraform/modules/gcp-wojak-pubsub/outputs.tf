output "orders_topic_id" {
  description = "Full ID of the orders topic (projects/P/topics/T)."
  value       = google_pubsub_topic.orders.id
}

output "orders_subscription_id" {
  description = "Full ID of the wojak subscription (source.pubsub.subscription)."
  value       = google_pubsub_subscription.orders.id
}

output "orders_subscription_name" {
  description = "Short name of the wojak subscription."
  value       = google_pubsub_subscription.orders.name
}

output "dead_letter_topic_id" {
  description = "Full ID of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription_id" {
  description = "Full ID of the subscription that retains dead-lettered orders for inspection."
  value       = google_pubsub_subscription.dead_letter.id
}

output "google_service_account_email" {
  description = "Google service account of the wojak pods (iam.gke.io/gcp-service-account)."
  value       = google_service_account.wojak.email
}

output "kms_key_id" {
  description = "ID of the CMEK key encrypting the topics."
  value       = google_kms_crypto_key.pubsub.id
}
