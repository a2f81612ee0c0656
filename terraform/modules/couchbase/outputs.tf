output "namespace" {
  description = "Namespace of the Couchbase cluster."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}

output "cluster_name" {
  description = "Name of the CouchbaseCluster resource."
  value       = var.cluster_name
}

output "srv_host" {
  description = "DNS SRV host of the cluster inside Kubernetes."
  value       = local.srv_host
}

output "connection_string" {
  description = "Store URL for the wojak engine (engine.store): couchbase://HOST?bucket=NAME."
  value       = "couchbase://${local.srv_host}?bucket=${var.bucket_name}"
}

output "bucket_name" {
  description = "Name of the wojak bucket."
  value       = var.bucket_name
}

output "app_username" {
  description = "Couchbase user wojak connects as."
  value       = var.app_username
}

output "app_password" {
  description = "Generated password of the wojak Couchbase user."
  value       = random_password.app.result
  sensitive   = true
}

output "admin_secret_name" {
  description = "Kubernetes secret (in the Couchbase namespace) holding the generated administrator credentials."
  value       = kubernetes_secret_v1.admin.metadata[0].name
}

output "xdcr_username" {
  description = "Couchbase user peers authenticate as for XDCR into this cluster."
  value       = local.xdcr_username
}

output "xdcr_password" {
  description = "Generated password of this cluster's XDCR user, to hand to peer clusters."
  value       = random_password.xdcr.result
  sensitive   = true
}
