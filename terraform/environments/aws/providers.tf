provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

# Kubernetes and Helm authenticate with short-lived EKS tokens from the AWS
# CLI (the caller's own AWS identity); no kubeconfig or static key is used.
provider "kubernetes" {
  host                   = module.aws_stack.cluster_endpoint
  cluster_ca_certificate = base64decode(module.aws_stack.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.aws_stack.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes {
    host                   = module.aws_stack.cluster_endpoint
    cluster_ca_certificate = base64decode(module.aws_stack.cluster_certificate_authority_data)

    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.aws_stack.cluster_name, "--region", var.region]
    }
  }
}
