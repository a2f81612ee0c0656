# wojak on AWS and GCP at once, as in the seed deployment: each cloud runs
# its own spot cluster, order sources, Couchbase (data on on-demand nodes,
# query/index on spot) and wojak release; the two Couchbase clusters
# replicate the wojak bucket to each other with XDCR (last write wins).
#
# XDCR needs a routed private network between the VPCs (site-to-site VPN or
# interconnect, not managed here) and each cluster's UUID, which exists only
# after the first apply: apply once with xdcr_enabled = false, read the UUIDs
# and load balancer addresses, then apply again with xdcr_enabled = true.

locals {
  aws_tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "wojak"
    "wojak.io/environment"      = var.name
  })

  namespace       = "wojak"
  service_account = "wojak"
  bucket          = "wojak"

  aws_data_tolerations = [{
    key      = module.eks.on_demand_node_taint.key
    operator = "Equal"
    value    = module.eks.on_demand_node_taint.value
    effect   = module.eks.on_demand_node_taint.effect
  }]
  gcp_data_tolerations = [{
    key      = module.gke.on_demand_node_taint.key
    operator = "Equal"
    value    = module.gke.on_demand_node_taint.value
    effect   = module.gke.on_demand_node_taint.effect
  }]

  aws_source_values = {
    sqs     = { queueUrl = module.aws_services.orders_queue_url, region = var.aws_region }
    sns     = { topicArn = module.aws_services.orders_topic_arn, queueUrl = module.aws_services.orders_queue_url, region = var.aws_region }
    kinesis = { streamName = module.aws_services.orders_stream_name, region = var.aws_region }
  }

  # Couchbase ports XDCR uses (REST, views/query, KV, and their TLS twins).
  xdcr_ports = {
    rest     = [8091, 8096]
    kv       = [11207, 11210]
    rest_tls = [18091, 18096]
  }
}

# ================================================================= AWS ===

module "eks" {
  source = "../../modules/aws-eks-spot"

  cluster_name        = "${var.name}-aws"
  vpc_id              = var.aws_vpc_id
  subnet_ids          = var.aws_private_subnet_ids
  spot_instance_types = var.aws_spot_instance_types
  tags                = local.aws_tags
}

module "aws_services" {
  source = "../../modules/aws-wojak-services"

  name                 = var.name
  sandbox_lambda_zip   = var.sandbox_lambda_zip
  oidc_provider_arn    = module.eks.oidc_provider_arn
  oidc_issuer          = module.eks.oidc_issuer
  namespace            = local.namespace
  service_account_name = local.service_account
  tags                 = local.aws_tags
}

resource "aws_vpc_security_group_ingress_rule" "xdcr_from_gcp" {
  for_each = local.xdcr_ports

  description       = "Couchbase XDCR (${each.key}) from the GCP cluster over the VPN"
  security_group_id = module.eks.node_security_group_id
  cidr_ipv4         = var.gcp_pods_cidr
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[1]
}

resource "helm_release" "node_termination_handler" {
  provider = helm.aws

  name       = "aws-node-termination-handler"
  namespace  = "kube-system"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-node-termination-handler"
  version    = "0.21.0"

  values = [yamlencode({
    enableSpotInterruptionDraining = true
    enableRebalanceMonitoring      = true
    enableScheduledEventDraining   = true
    nodeSelector                   = module.eks.spot_node_labels
  })]

  depends_on = [module.eks]
}

resource "kubernetes_storage_class_v1" "aws_couchbase" {
  provider = kubernetes.aws

  metadata {
    name = "couchbase-gp3"
  }
  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Retain"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
    kmsKeyId  = module.eks.kms_key_arn
  }

  depends_on = [module.eks]
}

module "couchbase_aws" {
  source    = "../../modules/couchbase"
  providers = { helm = helm.aws, kubernetes = kubernetes.aws }

  cluster_name       = "wojak-cb"
  bucket_name        = local.bucket
  chart_version      = var.couchbase_chart_version
  storage_class_name = kubernetes_storage_class_v1.aws_couchbase.metadata[0].name
  data_node_selector = module.eks.on_demand_node_labels
  data_tolerations   = local.aws_data_tolerations
  spot_node_selector = module.eks.spot_node_labels

  expose_xdcr = true
  xdcr_service_template = {
    metadata = {
      annotations = { "service.beta.kubernetes.io/aws-load-balancer-internal" = "true" }
    }
    spec = { type = "LoadBalancer" }
  }

  xdcr_remote_clusters = var.xdcr_enabled ? [{
    name          = "gcp"
    uuid          = var.gcp_couchbase_uuid
    hostname      = var.gcp_xdcr_hostname
    remote_bucket = local.bucket
  }] : []
  xdcr_remote_passwords = var.xdcr_enabled ? { gcp = module.couchbase_gcp.xdcr_password } : {}

  depends_on = [module.eks]
}

module "wojak_aws" {
  source    = "../../modules/wojak-release"
  providers = { helm = helm.aws, kubernetes = kubernetes.aws }

  namespace            = local.namespace
  chart_path           = var.wojak_chart_path
  source_type          = var.aws_source_type
  source_values        = lookup(local.aws_source_values, var.aws_source_type, {})
  service_account_name = local.service_account
  service_account_annotations = {
    "eks.amazonaws.com/role-arn" = module.aws_services.wojak_role_arn
  }
  store_url      = module.couchbase_aws.connection_string
  store_username = module.couchbase_aws.app_username
  store_password = module.couchbase_aws.app_password
  venue_url      = "lambda://${module.aws_services.sandbox_function_name}?region=${var.aws_region}"
  node_selector  = module.eks.spot_node_labels

  depends_on = [module.couchbase_aws]
}

# ================================================================= GCP ===

module "gke" {
  source = "../../modules/gcp-gke-spot"

  project_id                 = var.gcp_project_id
  region                     = var.gcp_region
  cluster_name               = "${var.name}-gcp"
  subnet_cidr                = var.gcp_subnet_cidr
  pods_cidr                  = var.gcp_pods_cidr
  master_authorized_networks = var.gcp_master_authorized_networks
  deletion_protection        = var.gcp_deletion_protection
  xdcr_source_cidrs          = [var.aws_vpc_cidr]
  labels                     = var.tags
}

module "gcp_pubsub" {
  source = "../../modules/gcp-wojak-pubsub"

  project_id             = var.gcp_project_id
  region                 = var.gcp_region
  name                   = var.name
  workload_identity_pool = module.gke.workload_identity_pool
  namespace              = local.namespace
  service_account_name   = local.service_account
  labels                 = var.tags
}

module "couchbase_gcp" {
  source    = "../../modules/couchbase"
  providers = { helm = helm.gcp, kubernetes = kubernetes.gcp }

  cluster_name       = "wojak-cb"
  bucket_name        = local.bucket
  chart_version      = var.couchbase_chart_version
  storage_class_name = "standard-rwo"
  data_node_selector = module.gke.on_demand_node_labels
  data_tolerations   = local.gcp_data_tolerations
  spot_node_selector = module.gke.spot_node_labels

  expose_xdcr = true
  xdcr_service_template = {
    metadata = {
      annotations = { "networking.gke.io/load-balancer-type" = "Internal" }
    }
    spec = { type = "LoadBalancer" }
  }

  xdcr_remote_clusters = var.xdcr_enabled ? [{
    name          = "aws"
    uuid          = var.aws_couchbase_uuid
    hostname      = var.aws_xdcr_hostname
    remote_bucket = local.bucket
  }] : []
  xdcr_remote_passwords = var.xdcr_enabled ? { aws = module.couchbase_aws.xdcr_password } : {}

  depends_on = [module.gke]
}

module "wojak_gcp" {
  source    = "../../modules/wojak-release"
  providers = { helm = helm.gcp, kubernetes = kubernetes.gcp }

  namespace            = local.namespace
  chart_path           = var.wojak_chart_path
  source_type          = "pubsub"
  source_values        = { pubsub = { subscription = module.gcp_pubsub.orders_subscription_id, project = var.gcp_project_id } }
  service_account_name = local.service_account
  service_account_annotations = {
    "iam.gke.io/gcp-service-account" = module.gcp_pubsub.google_service_account_email
  }
  store_url      = module.couchbase_gcp.connection_string
  store_username = module.couchbase_gcp.app_username
  store_password = module.couchbase_gcp.app_password
  venue_url      = "sandbox://in-process"
  node_selector  = module.gke.spot_node_labels

  depends_on = [module.couchbase_gcp]
}

check "xdcr_inputs" {
  assert {
    condition = !var.xdcr_enabled || alltrue([
      var.aws_couchbase_uuid != "", var.gcp_couchbase_uuid != "",
      var.aws_xdcr_hostname != "", var.gcp_xdcr_hostname != "",
    ])
    error_message = "xdcr_enabled needs aws_couchbase_uuid, gcp_couchbase_uuid, aws_xdcr_hostname and gcp_xdcr_hostname (known after the first apply)."
  }
}
