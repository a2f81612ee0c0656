# Remote state in S3 with native lock files (Terraform >= 1.10). Partial
# configuration: nothing environment-specific is committed. Supply it at init:
#
#   terraform init -backend-config=backend.hcl
#
# with a backend.hcl such as (see backend.hcl.example):
#
#   bucket       = "my-org-terraform-state"
#   key          = "wojak/aws/terraform.tfstate"
#   region       = "eu-west-1"
#   encrypt      = true
#   use_lockfile = true
#
# Credentials come from the environment (SSO profile, instance/OIDC role),
# never from this file.
terraform {
  backend "s3" {}
}
