# One AWS deployment of wojak: EKS with SPOT (wojak, Couchbase query/index) and
# ON_DEMAND (Couchbase data) managed node groups, the order sources, the
# sandbox broker Lambda, spot interruption handling, Couchbase via its
# operator, and the wojak release. Providers come from the calling root.

locals {
  wojak_namespace       = "wojak"
  wojak_service_account = "wojak"

  # The node group taint in Kubernetes toleration form.
  data_tolerations = [merge(module.eks.on_demand_node_taint, { operator = "Equal" })]

  source_values = {
    sqs     = { queueUrl = module.services.orders_queue_url, deadLetterQueueUrl = module.services.orders_dlq_url, region = var.region }
    sns     = { topicArn = module.services.orders_topic_arn, queueUrl = module.services.orders_queue_url, deadLetterQueueUrl = module.services.orders_dlq_url, region = var.region }
    kinesis = { streamName = module.services.orders_stream_name, deadLetterQueueUrl = module.services.orders_dlq_url, region = var.region, leaseTable = module.services.kinesis_lease_table_name, createLeaseTable = false }
  }
}

module "eks" {
  source = "../aws-eks-spot"

  cluster_name                 = var.cluster_name
  kubernetes_version           = var.kubernetes_version
  vpc_id                       = var.vpc_id
  subnet_ids                   = var.subnet_ids
  endpoint_public_access       = var.endpoint_public_access
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  spot_instance_types          = var.spot_instance_types
  on_demand_instance_types     = var.on_demand_instance_types
  tags                         = var.tags
}

module "services" {
  source = "../aws-wojak-services"

  name                         = var.name
  sandbox_lambda_zip           = var.sandbox_lambda_zip
  sandbox_reserved_concurrency = var.sandbox_reserved_concurrency
  oidc_provider_arn            = module.eks.oidc_provider_arn
  oidc_issuer                  = module.eks.oidc_issuer
  namespace                    = local.wojak_namespace
  service_account_name         = local.wojak_service_account
  tags                         = var.tags
}

# Spot interruption handling. Managed node groups already rebalance on EC2
# rebalance recommendations; NTH additionally cordons and drains a node as
# soon as its two-minute interruption notice appears in instance metadata.
resource "helm_release" "node_termination_handler" {
  count = var.enable_node_termination_handler ? 1 : 0

  name       = "aws-node-termination-handler"
  namespace  = "kube-system"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-node-termination-handler"
  version    = var.node_termination_handler_chart_version

  values = [yamlencode({
    enableSpotInterruptionDraining = true
    enableRebalanceMonitoring      = true
    enableRebalanceDraining        = false
    enableScheduledEventDraining   = true
    nodeSelector                   = module.eks.spot_node_labels
  })]

  depends_on = [module.eks]
}

# Encrypted gp3 volumes for the Couchbase data pods.
resource "kubernetes_storage_class_v1" "couchbase" {
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

module "couchbase" {
  source = "../couchbase"

  chart_version      = var.couchbase_chart_version
  storage_class_name = kubernetes_storage_class_v1.couchbase.metadata[0].name
  data_node_selector = module.eks.on_demand_node_labels
  data_tolerations   = local.data_tolerations
  spot_node_selector = module.eks.spot_node_labels

  # XDCR to peer clusters (multi-cloud): an internal NLB per exposed pod.
  expose_xdcr = var.expose_xdcr
  xdcr_service_template = {
    metadata = {
      annotations = { "service.beta.kubernetes.io/aws-load-balancer-internal" = "true" }
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

  depends_on = [module.eks]
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
    "eks.amazonaws.com/role-arn" = module.services.wojak_role_arn
  }
  replica_count    = var.wojak_replica_count
  engine_cluster   = var.wojak_cluster
  store_url        = module.couchbase.connection_string
  store_scope      = module.couchbase.home_scope
  store_collection = module.couchbase.collection_name
  store_username   = module.couchbase.app_username
  store_password   = module.couchbase.app_password
  venue_url        = "lambda://${module.services.sandbox_function_name}?region=${var.region}"
  node_selector    = module.eks.spot_node_labels

  depends_on = [module.couchbase]
}
