# Remote state in a GCS bucket (object versioning on; GCS locks natively).
# Partial configuration: supply it at init,
#
#   terraform init -backend-config=backend.hcl
#
# with a backend.hcl such as (see backend.hcl.example):
#
#   bucket = "my-org-terraform-state"
#   prefix = "wojak/gcp"
#
# Credentials come from Application Default Credentials (gcloud auth
# application-default login, or workload identity in CI), never from here.
terraform {
  backend "gcs" {}
}
