# Remote state in an Azure Storage blob (leases lock it). Partial
# configuration: supply it at init,
#
#   terraform init -backend-config=backend.hcl
#
# with a backend.hcl such as (see backend.hcl.example):
#
#   resource_group_name  = "tfstate"
#   storage_account_name = "myorgtfstate"
#   container_name       = "tfstate"
#   key                  = "wojak/azure.tfstate"
#   use_azuread_auth     = true
#
# Authentication is Entra ID (az login, or workload identity in CI); no
# storage account key is used.
terraform {
  backend "azurerm" {}
}
