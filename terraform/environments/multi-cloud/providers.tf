provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.aws_tags
  }
}

provider "google" {
  project = var.gcp_project_id
  region  = var.gcp_region
}

data "google_client_config" "current" {}

# One Kubernetes/Helm provider pair per cluster; all tokens are short-lived
# and come from the caller's own cloud identities.
provider "kubernetes" {
  alias                  = "aws"
  host                   = module.aws_stack.cluster_endpoint
  cluster_ca_certificate = base64decode(module.aws_stack.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.aws_stack.cluster_name, "--region", var.aws_region]
  }
}

provider "helm" {
  alias = "aws"
  kubernetes {
    host                   = module.aws_stack.cluster_endpoint
    cluster_ca_certificate = base64decode(module.aws_stack.cluster_certificate_authority_data)

    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.aws_stack.cluster_name, "--region", var.aws_region]
    }
  }
}

provider "kubernetes" {
  alias                  = "gcp"
  host                   = "https://${module.gcp_stack.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(module.gcp_stack.ca_certificate)
}

provider "helm" {
  alias = "gcp"
  kubernetes {
    host                   = "https://${module.gcp_stack.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(module.gcp_stack.ca_certificate)
  }
}
