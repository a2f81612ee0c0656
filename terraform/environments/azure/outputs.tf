output "resource_group_name" {
  description = "Resource group holding the cluster and identities."
  value       = azurerm_resource_group.this.name
}

output "cluster_name" {
  description = "AKS cluster name (az aks get-credentials ...; then kubelogin convert-kubeconfig -l azurecli)."
  value       = module.aks.cluster_name
}

output "wojak_identity_client_id" {
  description = "Client ID of the wojak workload identity."
  value       = azurerm_user_assigned_identity.wojak.client_id
}

output "couchbase_connection_string" {
  description = "Store URL the engine uses."
  value       = module.couchbase.connection_string
}

output "wojak_values" {
  description = "Values passed to the wojak chart (no credentials)."
  value       = module.wojak.values
}
