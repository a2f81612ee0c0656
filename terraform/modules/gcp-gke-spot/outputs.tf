output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.this.name
}

output "cluster_id" {
  description = "Full resource ID of the GKE cluster."
  value       = google_container_cluster.this.id
}

output "endpoint" {
  description = "IP address of the Kubernetes API server."
  value       = google_container_cluster.this.endpoint
}

output "ca_certificate" {
  description = "Base64 encoded CA certificate of the cluster."
  value       = google_container_cluster.this.master_auth[0].cluster_ca_certificate
}

output "workload_identity_pool" {
  description = "Workload Identity pool of the cluster (PROJECT.svc.id.goog)."
  value       = "${var.project_id}.svc.id.goog"
}

output "network_name" {
  description = "Name of the VPC network created for the cluster."
  value       = google_compute_network.this.name
}

output "node_service_account" {
  description = "Email of the least-privilege node service account."
  value       = google_service_account.nodes.email
}

output "spot_node_labels" {
  description = "Labels of the spot node pool (nodeSelector for spot-tolerant pods)."
  value       = local.spot_labels
}

output "on_demand_node_labels" {
  description = "Labels of the on-demand Couchbase data pool."
  value       = local.on_demand_labels
}

output "on_demand_node_taint" {
  description = "Taint on the on-demand pool, in Kubernetes form (key, value, effect)."
  value       = local.on_demand_taint
}
