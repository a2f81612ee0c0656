output "cluster_id" {
  description = "Resource ID of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.id
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "host" {
  description = "Kubernetes API server URL."
  value       = azurerm_kubernetes_cluster.this.kube_config[0].host
  sensitive   = true
}

output "cluster_ca_certificate" {
  description = "Base64 encoded CA certificate of the cluster."
  value       = azurerm_kubernetes_cluster.this.kube_config[0].cluster_ca_certificate
  sensitive   = true
}

output "oidc_issuer_url" {
  description = "OIDC issuer URL used by workload identity federated credentials."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "spot_node_labels" {
  description = "Labels of the Spot pool (nodeSelector for spot-tolerant pods)."
  value       = local.spot_labels
}

output "spot_node_taint" {
  description = "Taint AKS puts on every Spot node, in Kubernetes form (key, value, effect)."
  value       = local.spot_taint
}

output "on_demand_node_labels" {
  description = "Labels of the on-demand Couchbase data pool."
  value       = local.on_demand_labels
}

output "on_demand_node_taint" {
  description = "Taint on the on-demand pool, in Kubernetes form (key, value, effect)."
  value       = local.on_demand_taint
}

output "log_analytics_workspace_id" {
  description = "Resource ID of the Log Analytics workspace receiving container insights."
  value       = azurerm_log_analytics_workspace.this.id
}
