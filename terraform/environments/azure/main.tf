# wojak on Azure: AKS with a Spot pool (wojak, Couchbase query/index), an
# on-demand pool (Couchbase data) and a system pool, Couchbase via its
# operator, a workload identity for the wojak pods, and the wojak release.

locals {
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "wojak"
    "wojak.io/environment"      = var.name
  })

  wojak_namespace       = "wojak"
  wojak_service_account = "wojak"

  data_tolerations = [{
    key      = module.aks.on_demand_node_taint.key
    operator = "Equal"
    value    = module.aks.on_demand_node_taint.value
    effect   = module.aks.on_demand_node_taint.effect
  }]
  spot_tolerations = [{
    key      = module.aks.spot_node_taint.key
    operator = "Equal"
    value    = module.aks.spot_node_taint.value
    effect   = module.aks.spot_node_taint.effect
  }]
}

resource "azurerm_resource_group" "this" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = local.tags
}

module "aks" {
  source = "../../modules/azure-aks-spot"

  cluster_name            = var.name
  resource_group_name     = azurerm_resource_group.this.name
  location                = var.location
  admin_group_object_ids  = var.admin_group_object_ids
  private_cluster_enabled = var.private_cluster_enabled
  spot_vm_size            = var.spot_vm_size
  spot_max_price          = var.spot_max_price
  on_demand_vm_size       = var.on_demand_vm_size
  tags                    = local.tags
}

# Workload identity of the wojak pods: trusted only for
# system:serviceaccount:wojak:wojak on this cluster's OIDC issuer. It holds no
# role yet (no Azure broker is wired); grant roles on specific resources.
resource "azurerm_user_assigned_identity" "wojak" {
  name                = "${var.name}-wojak"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "wojak" {
  name                = "${var.name}-wojak-${local.wojak_namespace}-${local.wojak_service_account}"
  resource_group_name = azurerm_resource_group.this.name
  parent_id           = azurerm_user_assigned_identity.wojak.id
  issuer              = module.aks.oidc_issuer_url
  subject             = "system:serviceaccount:${local.wojak_namespace}:${local.wojak_service_account}"
  audience            = ["api://AzureADTokenExchange"]
}

module "couchbase" {
  source = "../../modules/couchbase"

  chart_version      = var.couchbase_chart_version
  storage_class_name = "managed-csi-premium" # AKS built-in Premium SSD CSI class
  data_node_selector = module.aks.on_demand_node_labels
  data_tolerations   = local.data_tolerations
  spot_node_selector = module.aks.spot_node_labels
  spot_tolerations   = local.spot_tolerations

  depends_on = [module.aks]
}

module "wojak" {
  source = "../../modules/wojak-release"

  namespace            = local.wojak_namespace
  chart_path           = var.wojak_chart_path
  image_tag            = var.wojak_image_tag
  source_type          = var.source_type
  source_accounts      = var.source_accounts
  source_values        = var.source_values
  service_account_name = local.wojak_service_account
  service_account_annotations = {
    "azure.workload.identity/client-id" = azurerm_user_assigned_identity.wojak.client_id
  }
  pod_labels = {
    "azure.workload.identity/use" = "true"
  }
  store_url      = module.couchbase.connection_string
  store_username = module.couchbase.app_username
  store_password = module.couchbase.app_password
  venue_url      = var.venue_url
  node_selector  = module.aks.spot_node_labels
  tolerations    = local.spot_tolerations

  depends_on = [module.couchbase, azurerm_federated_identity_credential.wojak]
}
