# wojak on GCP: the whole composition (private GKE with spot and on-demand
# pools, Pub/Sub with retry and dead-letter policies, Couchbase, the wojak
# release) lives in modules/gcp-stack; this root only configures the
# providers and the state.

locals {
  labels = merge(var.labels, {
    "app-kubernetes-io-part-of" = "wojak"
    "wojak-environment"         = var.name
  })
}

module "gcp_stack" {
  source = "../../modules/gcp-stack"

  project_id                 = var.project_id
  region                     = var.region
  name                       = var.name
  cluster_name               = var.name
  master_authorized_networks = var.master_authorized_networks
  enable_private_endpoint    = var.enable_private_endpoint
  spot_machine_type          = var.spot_machine_type
  on_demand_machine_type     = var.on_demand_machine_type
  deletion_protection        = var.deletion_protection
  source_type                = var.source_type
  source_accounts            = var.source_accounts
  venue_url                  = var.venue_url
  wojak_chart_path           = var.wojak_chart_path
  wojak_image_tag            = var.wojak_image_tag
  couchbase_chart_version    = var.couchbase_chart_version
  # The cluster gets var.labels as is (the GKE module adds its own labels and
  # checkov resolves them statically, CKV_GCP_21); the rest gets local.labels.
  cluster_labels = var.labels
  labels         = local.labels
}

# State addresses from before the stack module existed.
moved {
  from = module.gke
  to   = module.gcp_stack.module.gke
}

moved {
  from = module.pubsub
  to   = module.gcp_stack.module.pubsub
}

moved {
  from = module.couchbase
  to   = module.gcp_stack.module.couchbase
}

moved {
  from = module.wojak
  to   = module.gcp_stack.module.wojak
}
