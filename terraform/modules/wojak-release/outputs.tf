output "namespace" {
  description = "Namespace of the wojak release."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}

output "release_name" {
  description = "Helm release name."
  value       = helm_release.wojak.name
}

output "store_secret_name" {
  description = "Kubernetes secret holding the engine's Couchbase credentials."
  value       = kubernetes_secret_v1.store.metadata[0].name
}

output "values" {
  description = "Chart values passed to the release (no credentials in them)."
  value       = local.values
}
