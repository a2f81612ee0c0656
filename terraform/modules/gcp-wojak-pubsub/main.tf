# The GCP side of wojak: a CMEK encrypted orders topic, the wojak
# subscription with retry and dead-letter policies, and a Google service
# account bound through Workload Identity to the wojak Kubernetes service
# account. Every IAM grant is on a single topic, subscription or key.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels       = merge(var.labels, { "wojak-component" = "pubsub" })
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  wojak_member = "serviceAccount:${google_service_account.wojak.email}"
}

# ---------------------------------------------------------------- CMEK -----

resource "google_kms_key_ring" "this" {
  project  = var.project_id
  name     = "${var.name}-pubsub"
  location = var.region
}

resource "google_kms_crypto_key" "pubsub" {
  name            = "${var.name}-pubsub"
  key_ring        = google_kms_key_ring.this.id
  rotation_period = var.key_rotation_period
  labels          = local.labels

  # GCP never deletes keys; destroying one only destroys its versions and
  # makes retained messages unreadable. See the README before a destroy.
  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "pubsub_agent" {
  crypto_key_id = google_kms_crypto_key.pubsub.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.pubsub_agent
}

# -------------------------------------------------------------- topics -----

resource "google_pubsub_topic" "orders" {
  project                    = var.project_id
  name                       = "${var.name}-orders"
  kms_key_name               = google_kms_crypto_key.pubsub.id
  message_retention_duration = var.message_retention_duration
  labels                     = local.labels

  depends_on = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_topic" "dead_letter" {
  project      = var.project_id
  name         = "${var.name}-orders-dead-letter"
  kms_key_name = google_kms_crypto_key.pubsub.id
  labels       = local.labels

  depends_on = [google_kms_crypto_key_iam_member.pubsub_agent]
}

# ------------------------------------------------------- subscriptions -----

resource "google_pubsub_subscription" "orders" {
  project                      = var.project_id
  name                         = "${var.name}-orders-wojak"
  topic                        = google_pubsub_topic.orders.id
  ack_deadline_seconds         = var.ack_deadline_seconds
  message_retention_duration   = var.message_retention_duration
  enable_message_ordering      = true
  enable_exactly_once_delivery = false
  labels                       = local.labels

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = "" # never expire, even when idle
  }
}

resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-orders-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the
# dead-letter topic and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_orders_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.orders.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# ------------------------------------------- wojak workload identity -------

resource "google_service_account" "wojak" {
  project      = var.project_id
  account_id   = "${var.name}-wojak"
  display_name = "wojak pods (${var.namespace}/${var.service_account_name})"
}

resource "google_service_account_iam_member" "wojak_workload_identity" {
  service_account_id = google_service_account.wojak.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.workload_identity_pool}[${var.namespace}/${var.service_account_name}]"
}

resource "google_pubsub_subscription_iam_member" "wojak_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.orders.name
  role         = "roles/pubsub.subscriber"
  member       = local.wojak_member
}

resource "google_pubsub_subscription_iam_member" "wojak_viewer" {
  project      = var.project_id
  subscription = google_pubsub_subscription.orders.name
  role         = "roles/pubsub.viewer"
  member       = local.wojak_member
}

# The sidecar dead-letters `conflict` and `invalid` verdicts itself.
resource "google_pubsub_topic_iam_member" "wojak_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.wojak_member
}

# Publishing results / test orders onto the orders topic.
resource "google_pubsub_topic_iam_member" "wojak_orders_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.orders.name
  role    = "roles/pubsub.publisher"
  member  = local.wojak_member
}
