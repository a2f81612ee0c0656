# One state for both clouds (the XDCR wiring needs both clusters' outputs),
# kept in S3 with native lock files. Partial configuration: supply it at init,
#
#   terraform init -backend-config=backend.hcl
#
# with a backend.hcl such as (see backend.hcl.example):
#
#   bucket       = "my-org-terraform-state"
#   key          = "wojak/multi-cloud/terraform.tfstate"
#   region       = "eu-west-1"
#   encrypt      = true
#   use_lockfile = true
terraform {
  backend "s3" {}
}
