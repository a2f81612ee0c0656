# AKS cluster for wojak: Entra ID + Azure RBAC only (no local accounts),
# workload identity, an on-demand system pool for critical add-ons, a Spot
# pool (wojak pods, Couchbase query/index) and a tainted on-demand pool for
# the Couchbase data service.

locals {
  tags = merge(var.tags, { "wojak.io/cluster" = var.cluster_name })

  spot_labels = {
    "wojak.io/capacity"                     = "spot"
    "wojak.io/pool"                         = "spot"
    "kubernetes.azure.com/scalesetpriority" = "spot"
  }
  # AKS adds this taint to every Spot node; declaring it avoids a diff.
  spot_taint = {
    key    = "kubernetes.azure.com/scalesetpriority"
    value  = "spot"
    effect = "NoSchedule"
  }
  on_demand_labels = {
    "wojak.io/capacity" = "on-demand"
    "wojak.io/pool"     = "couchbase-data"
  }
  on_demand_taint = {
    key    = "wojak.io/dedicated"
    value  = "couchbase-data"
    effect = "NoSchedule"
  }
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.cluster_name}-logs"
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_kubernetes_cluster" "this" {
  #checkov:skip=CKV_AZURE_117:Node OS disks are ephemeral (host-encrypted, no managed OS disk) and Couchbase volumes use platform-key encrypted managed disks; customer-managed keys need a Key Vault this module does not own.
  name                      = var.cluster_name
  location                  = var.location
  resource_group_name       = var.resource_group_name
  dns_prefix                = var.cluster_name
  kubernetes_version        = var.kubernetes_version
  sku_tier                  = "Standard"
  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"

  private_cluster_enabled           = var.private_cluster_enabled
  local_account_disabled            = true
  role_based_access_control_enabled = true
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  azure_policy_enabled              = true

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled     = true
    admin_group_object_ids = var.admin_group_object_ids
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_vm_size
    zones                        = var.zones
    auto_scaling_enabled         = true
    min_count                    = var.system_node_count
    max_count                    = var.system_node_count * 2
    max_pods                     = 110
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = var.os_disk_size_gb
    host_encryption_enabled      = true
    only_critical_addons_enabled = true
    temporary_name_for_rotation  = "systemtmp"
    tags                         = local.tags

    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_policy      = "azure"
    load_balancer_sku   = "standard"
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.this.id
    msi_auth_for_monitoring_enabled = true
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  tags = local.tags
}

resource "azurerm_kubernetes_cluster_node_pool" "spot" {
  name                    = "spot"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  vm_size                 = var.spot_vm_size
  zones                   = var.zones
  mode                    = "User"
  priority                = "Spot"
  eviction_policy         = var.spot_eviction_policy
  spot_max_price          = var.spot_max_price
  auto_scaling_enabled    = true
  min_count               = var.spot_min_count
  max_count               = var.spot_max_count
  max_pods                = 110
  os_disk_type            = "Ephemeral"
  os_disk_size_gb         = var.os_disk_size_gb
  host_encryption_enabled = true
  node_labels             = local.spot_labels
  node_taints             = ["${local.spot_taint.key}=${local.spot_taint.value}:${local.spot_taint.effect}"]
  tags                    = local.tags
}

resource "azurerm_kubernetes_cluster_node_pool" "on_demand" {
  name                    = "cbdata"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  vm_size                 = var.on_demand_vm_size
  zones                   = var.zones
  mode                    = "User"
  priority                = "Regular"
  auto_scaling_enabled    = true
  min_count               = var.on_demand_node_count
  max_count               = var.on_demand_node_count + 2
  max_pods                = 110
  os_disk_type            = "Ephemeral"
  os_disk_size_gb         = var.os_disk_size_gb
  host_encryption_enabled = true
  node_labels             = local.on_demand_labels
  node_taints             = ["${local.on_demand_taint.key}=${local.on_demand_taint.value}:${local.on_demand_taint.effect}"]
  tags                    = local.tags

  upgrade_settings {
    max_surge = "1"
  }
}
