provider "google" {
  project = var.project_id
  region  = var.region
}

# Kubernetes and Helm use the caller's short-lived OAuth token (Application
# Default Credentials); no kubeconfig or key file.
data "google_client_config" "current" {}

provider "kubernetes" {
  host                   = "https://${module.gcp_stack.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(module.gcp_stack.ca_certificate)
}

provider "helm" {
  kubernetes {
    host                   = "https://${module.gcp_stack.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(module.gcp_stack.ca_certificate)
  }
}
