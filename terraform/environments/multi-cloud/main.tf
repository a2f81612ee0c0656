# wojak on AWS and GCP at once, as in the seed deployment: each cloud runs
# its own stack (modules/aws-stack, modules/gcp-stack: spot cluster, order
# sources, Couchbase with data on on-demand nodes and query/index on spot,
# and the wojak release); this root adds the XDCR wiring.
#
# One writer per account across clouds: each cluster is a home ("aws",
# "gcp"). Its engines run with WOJAK_ENGINE_CLUSTER = its name, refuse every
# account the risk config homes elsewhere, and write only the scope named
# after it in the `wojak` bucket. XDCR replicates each scope one way, to the
# peer, where it is a read-only replica: no document is written on two
# clusters and no scope travels both ways. modules/xdcr-topology derives all
# of it, including a fail-over (var.failover, terraform/README.md).
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

  bucket = "wojak"

  # Each cluster's home name: its engines' WOJAK_ENGINE_CLUSTER and its scope.
  clusters = ["aws", "gcp"]

  # Couchbase ports XDCR uses (REST, views/query, KV, and their TLS twins).
  xdcr_ports = {
    rest     = [8091, 8096]
    kv       = [11207, 11210]
    rest_tls = [18091, 18096]
  }
}

module "topology" {
  source = "../../modules/xdcr-topology"

  topology = {
    clusters = local.clusters
    failover = var.failover
  }
}

module "aws_stack" {
  source = "../../modules/aws-stack"
  providers = {
    aws        = aws
    tls        = tls
    random     = random
    helm       = helm.aws
    kubernetes = kubernetes.aws
  }

  name                    = var.name
  cluster_name            = "${var.name}-aws"
  region                  = var.aws_region
  vpc_id                  = var.aws_vpc_id
  subnet_ids              = var.aws_private_subnet_ids
  spot_instance_types     = var.aws_spot_instance_types
  sandbox_lambda_zip      = var.sandbox_lambda_zip
  source_type             = var.aws_source_type
  source_accounts         = var.source_accounts
  wojak_chart_path        = var.wojak_chart_path
  couchbase_chart_version = var.couchbase_chart_version
  tags                    = local.aws_tags

  # Home "aws": engines and scope "aws"; the scope "gcp" is a replica here.
  wojak_cluster       = "aws"
  written_scopes      = module.topology.written_scopes["aws"]
  replica_scopes      = module.topology.replica_scopes["aws"]
  wojak_replica_count = module.topology.engines_enabled["aws"] ? var.wojak_replica_count : 0

  expose_xdcr = true
  xdcr_remote_clusters = var.xdcr_enabled ? [{
    name          = "gcp"
    uuid          = var.gcp_couchbase_uuid
    hostname      = var.gcp_xdcr_hostname
    remote_bucket = local.bucket
    paused        = module.topology.replication_paused["aws"]["gcp"]
  }] : []
  xdcr_remote_passwords = var.xdcr_enabled ? { gcp = module.gcp_stack.couchbase_xdcr_password } : {}
}

module "gcp_stack" {
  source = "../../modules/gcp-stack"
  providers = {
    google     = google
    random     = random
    helm       = helm.gcp
    kubernetes = kubernetes.gcp
  }

  project_id                 = var.gcp_project_id
  region                     = var.gcp_region
  name                       = var.name
  cluster_name               = "${var.name}-gcp"
  subnet_cidr                = var.gcp_subnet_cidr
  pods_cidr                  = var.gcp_pods_cidr
  master_authorized_networks = var.gcp_master_authorized_networks
  deletion_protection        = var.gcp_deletion_protection
  xdcr_source_cidrs          = contains(module.topology.xdcr_admitted["gcp"], "aws") ? [var.aws_vpc_cidr] : []
  source_type                = "pubsub"
  source_accounts            = var.source_accounts
  venue_url                  = "sandbox://in-process"
  wojak_chart_path           = var.wojak_chart_path
  couchbase_chart_version    = var.couchbase_chart_version
  cluster_labels             = var.tags
  labels                     = var.tags

  # Home "gcp": engines and scope "gcp"; the scope "aws" is a replica here.
  wojak_cluster       = "gcp"
  written_scopes      = module.topology.written_scopes["gcp"]
  replica_scopes      = module.topology.replica_scopes["gcp"]
  wojak_replica_count = module.topology.engines_enabled["gcp"] ? var.wojak_replica_count : 0

  expose_xdcr = true
  xdcr_remote_clusters = var.xdcr_enabled ? [{
    name          = "aws"
    uuid          = var.aws_couchbase_uuid
    hostname      = var.aws_xdcr_hostname
    remote_bucket = local.bucket
    paused        = module.topology.replication_paused["gcp"]["aws"]
  }] : []
  xdcr_remote_passwords = var.xdcr_enabled ? { aws = module.aws_stack.couchbase_xdcr_password } : {}
}

# Dropped while GCP is isolated (fail-over): nothing it sends is admitted.
resource "aws_vpc_security_group_ingress_rule" "xdcr_from_gcp" {
  for_each = contains(module.topology.xdcr_admitted["aws"], "gcp") ? local.xdcr_ports : {}

  description       = "Couchbase XDCR (${each.key}) from the GCP cluster over the VPN"
  security_group_id = module.aws_stack.node_security_group_id
  cidr_ipv4         = var.gcp_pods_cidr
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[1]
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

# State addresses from before the stack modules existed.
moved {
  from = module.eks
  to   = module.aws_stack.module.eks
}

moved {
  from = module.aws_services
  to   = module.aws_stack.module.services
}

moved {
  from = helm_release.node_termination_handler
  to   = module.aws_stack.helm_release.node_termination_handler[0]
}

moved {
  from = kubernetes_storage_class_v1.aws_couchbase
  to   = module.aws_stack.kubernetes_storage_class_v1.couchbase
}

moved {
  from = module.couchbase_aws
  to   = module.aws_stack.module.couchbase
}

moved {
  from = module.wojak_aws
  to   = module.aws_stack.module.wojak
}

moved {
  from = module.gke
  to   = module.gcp_stack.module.gke
}

moved {
  from = module.gcp_pubsub
  to   = module.gcp_stack.module.pubsub
}

moved {
  from = module.couchbase_gcp
  to   = module.gcp_stack.module.couchbase
}

moved {
  from = module.wojak_gcp
  to   = module.gcp_stack.module.wojak
}
