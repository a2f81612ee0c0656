# wojak on AWS: the whole composition (EKS with SPOT and ON_DEMAND node
# groups, order sources, sandbox broker Lambda, spot interruption handling,
# Couchbase, the wojak release) lives in modules/aws-stack; this root only
# configures the providers and the state.

locals {
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "wojak"
    "wojak.io/environment"      = var.name
  })
}

module "aws_stack" {
  source = "../../modules/aws-stack"

  name                                   = var.name
  cluster_name                           = var.name
  region                                 = var.region
  vpc_id                                 = var.vpc_id
  subnet_ids                             = var.private_subnet_ids
  kubernetes_version                     = var.kubernetes_version
  endpoint_public_access                 = var.endpoint_public_access
  endpoint_public_access_cidrs           = var.endpoint_public_access_cidrs
  spot_instance_types                    = var.spot_instance_types
  on_demand_instance_types               = var.on_demand_instance_types
  sandbox_lambda_zip                     = var.sandbox_lambda_zip
  sandbox_reserved_concurrency           = var.sandbox_reserved_concurrency
  source_type                            = var.source_type
  source_accounts                        = var.source_accounts
  wojak_chart_path                       = var.wojak_chart_path
  wojak_image_tag                        = var.wojak_image_tag
  enable_node_termination_handler        = var.enable_node_termination_handler
  node_termination_handler_chart_version = var.node_termination_handler_chart_version
  couchbase_chart_version                = var.couchbase_chart_version
  tags                                   = local.tags
}

# State addresses from before the stack module existed.
moved {
  from = module.eks
  to   = module.aws_stack.module.eks
}

moved {
  from = module.services
  to   = module.aws_stack.module.services
}

moved {
  from = helm_release.node_termination_handler
  to   = module.aws_stack.helm_release.node_termination_handler
}

moved {
  from = kubernetes_storage_class_v1.couchbase
  to   = module.aws_stack.kubernetes_storage_class_v1.couchbase
}

moved {
  from = module.couchbase
  to   = module.aws_stack.module.couchbase
}

moved {
  from = module.wojak
  to   = module.aws_stack.module.wojak
}
