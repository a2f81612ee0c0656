output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "ARN of the EKS cluster."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "HTTPS endpoint of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 encoded CA certificate of the cluster."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider used by IRSA roles."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer" {
  description = "OIDC issuer host and path (no scheme), as used in IRSA trust policy condition keys."
  value       = local.oidc_issuer
}

output "spot_node_labels" {
  description = "Labels of the SPOT node group (use as nodeSelector for spot-tolerant pods)."
  value       = local.spot_labels
}

output "on_demand_node_labels" {
  description = "Labels of the ON_DEMAND Couchbase data node group."
  value       = local.on_demand_labels
}

output "on_demand_node_taint" {
  description = "Taint on the ON_DEMAND node group, in Kubernetes form (key, value, effect)."
  value       = local.on_demand_taint
}

output "node_security_group_id" {
  description = "Cluster security group shared by the control plane and the managed nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "kms_key_arn" {
  description = "ARN of the KMS key encrypting Kubernetes secrets, node volumes and control plane logs."
  value       = aws_kms_key.cluster.arn
}
