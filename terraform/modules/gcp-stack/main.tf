# One GCP deployment of wojak: private GKE with a spot pool (wojak, Couchbase
# query/index) and an on-demand pool (Couchbase data), Pub/Sub with retry and
# dead-letter policies, Couchbase via its operator, and the wojak release.
# Providers come from the calling root.

locals {
  wojak_namespace       = "wojak"
  wojak_service_account = "wojak"

  # The on-demand pool taint in Kubernetes toleration form.
  data_tolerations = [merge(module.gke.on_demand_node_taint, { operator = "Equal" })]

  source_values = {
    pubsub = {
      subscription    = module.pubsub.orders_subscription_id # the chart takes the full id or the short one
      deadLetterTopic = module.pubsub.dead_letter_topic_id
      project         = var.project_id
    }
  }
}

module "gke" {
  source = "../gcp-gke-spot"

  project_id                 = var.project_id
  region                     = var.region
  cluster_name               = var.cluster_name
  subnet_cidr                = var.subnet_cidr
  pods_cidr                  = var.pods_cidr
  master_authorized_networks = var.master_authorized_networks
  enable_private_endpoint    = var.enable_private_endpoint
  spot_machine_type          = var.spot_machine_type
  on_demand_machine_type     = var.on_demand_machine_type
  deletion_protection        = var.deletion_protection
  xdcr_source_cidrs          = var.xdcr_source_cidrs
  # The module adds its own cluster labels; passing the caller's labels
  # directly keeps resource_labels statically resolvable for checkov
  # (CKV_GCP_21).
  labels = var.cluster_labels
}

module "pubsub" {
  source = "../gcp-wojak-pubsub"

  project_id             = var.project_id
  region                 = var.region
  name                   = var.name
  workload_identity_pool = module.gke.workload_identity_pool
  namespace              = local.wojak_namespace
  service_account_name   = local.wojak_service_account
  labels                 = var.labels
}

module "couchbase" {
  source = "../couchbase"

  chart_version      = var.couchbase_chart_version
  storage_class_name = "standard-rwo" # GKE's default pd-balanced CSI class
  data_node_selector = module.gke.on_demand_node_labels
  data_tolerations   = local.data_tolerations
  spot_node_selector = module.gke.spot_node_labels

  # XDCR to peer clusters (multi-cloud): an internal load balancer per pod.
  expose_xdcr = var.expose_xdcr
  xdcr_service_template = {
    metadata = {
      annotations = { "networking.gke.io/load-balancer-type" = "Internal" }
    }
    spec = { type = "LoadBalancer" }
  }
  xdcr_remote_clusters  = var.xdcr_remote_clusters
  xdcr_remote_passwords = var.xdcr_remote_passwords

  # One writer per scope: this cluster's engines write the scope named after
  # it; its peers' scopes are read-only replicas here.
  scopes = var.wojak_cluster == null ? null : {
    home     = var.wojak_cluster
    written  = var.written_scopes == null ? [var.wojak_cluster] : var.written_scopes # [] (home failed over) stays []
    replicas = var.replica_scopes
  }

  depends_on = [module.gke]
}

module "wojak" {
  source = "../wojak-release"

  namespace            = local.wojak_namespace
  chart_path           = var.wojak_chart_path
  image_tag            = var.wojak_image_tag
  source_type          = var.source_type
  source_accounts      = var.source_accounts
  source_values        = lookup(local.source_values, var.source_type, {})
  service_account_name = local.wojak_service_account
  service_account_annotations = {
    "iam.gke.io/gcp-service-account" = module.pubsub.google_service_account_email
  }
  replica_count    = var.wojak_replica_count
  engine_cluster   = var.wojak_cluster
  store_url        = module.couchbase.connection_string
  store_scope      = module.couchbase.home_scope
  store_collection = module.couchbase.collection_name
  store_username   = module.couchbase.app_username
  store_password   = module.couchbase.app_password
  venue_url        = var.venue_url
  node_selector    = module.gke.spot_node_labels

  depends_on = [module.couchbase]
}
