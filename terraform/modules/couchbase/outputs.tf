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
  description = "Bucket-level store URL, couchbase://HOST?bucket=NAME; the wojak release appends &scope=home_scope&collection=collection_name."
  value       = "couchbase://${local.srv_host}?bucket=${var.bucket_name}"
}

output "home_scope" {
  description = "This cluster's own scope, which its wojak engines write (null: unscoped, the default collection)."
  value       = local.scoped ? var.scopes.home : null
}

output "collection_name" {
  description = "Collection of the wojak store inside every scope (null: unscoped)."
  value       = local.collection
}

output "written_scopes" {
  description = "Scopes this cluster writes and replicates to its peers."
  value       = local.written_scopes
}

output "replica_scopes" {
  description = "Peers' scopes held here read-only, received over XDCR."
  value       = local.scoped ? sort(var.scopes.replicas) : []
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
