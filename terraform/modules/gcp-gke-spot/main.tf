# GKE cluster for wojak: a private, VPC-native, Workload Identity enabled
# regional cluster with a spot node pool (wojak pods, Couchbase query/index)
# and a tainted on-demand pool for the Couchbase data service.

locals {
  labels = merge({ "managed-by" = "terraform", "wojak-cluster" = var.cluster_name }, var.labels)

  spot_labels = {
    "wojak.io/capacity" = "spot"
    "wojak.io/pool"     = "spot"
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

  node_roles = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
  ])
}

# ------------------------------------------------------------ network ------

resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = "${var.cluster_name}-vpc"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "nodes" {
  project                  = var.project_id
  name                     = "${var.cluster_name}-nodes"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Explicit default: refuse ingress from anywhere unless a higher-priority rule
# (GKE's own, or the XDCR rule below) allows it.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.cluster_name}-deny-ingress"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 65534

  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Couchbase XDCR from the peer clouds' networks (over VPN / interconnect).
resource "google_compute_firewall" "xdcr" {
  count     = length(var.xdcr_source_cidrs) > 0 ? 1 : 0
  project   = var.project_id
  name      = "${var.cluster_name}-allow-xdcr"
  network   = google_compute_network.this.id
  direction = "INGRESS"
  priority  = 900

  source_ranges = var.xdcr_source_cidrs

  allow {
    protocol = "tcp"
    ports    = ["8091-8096", "11207", "11210", "18091-18096"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Private nodes reach public registries (Couchbase images) through Cloud NAT.
resource "google_compute_router" "this" {
  project = var.project_id
  name    = "${var.cluster_name}-router"
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  project                            = var.project_id
  name                               = "${var.cluster_name}-nat"
  router                             = google_compute_router.this.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# ---------------------------------------------------- node identity --------

resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.cluster_name}-nodes"
  display_name = "${var.cluster_name} GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  for_each = local.node_roles
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.nodes.email}"
}

# ------------------------------------------------------------ cluster ------

resource "google_container_cluster" "this" {
  project             = var.project_id
  name                = var.cluster_name
  location            = var.region
  node_locations      = length(var.node_locations) > 0 ? var.node_locations : null
  network             = google_compute_network.this.id
  subnetwork          = google_compute_subnetwork.nodes.id
  networking_mode     = "VPC_NATIVE"
  deletion_protection = var.deletion_protection
  resource_labels     = merge(var.labels, { "managed-by" = "terraform", "app" = "wojak" })

  # Node pools are managed below; the default pool is removed at creation.
  remove_default_node_pool = true
  initial_node_count       = 1

  # Configuration of the (immediately removed) default pool, hardened anyway.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"
    disk_size_gb    = var.disk_size_gb
    labels          = local.labels

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = var.enable_private_endpoint
    master_ipv4_cidr_block  = var.master_ipv4_cidr_block
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  release_channel {
    channel = var.release_channel
  }

  network_policy {
    enabled  = true
    provider = "CALICO"
  }

  addons_config {
    network_policy_config {
      disabled = false
    }
    http_load_balancing {
      disabled = false
    }
    horizontal_pod_autoscaling {
      disabled = false
    }
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
  }

  authenticator_groups_config {
    security_group = "gke-security-groups@${var.project_id}.iam.gserviceaccount.com"
  }

  lifecycle {
    ignore_changes = [node_config]
  }
}

# ---------------------------------------------------------- node pools -----

resource "google_container_node_pool" "spot" {
  project  = var.project_id
  name     = "spot"
  cluster  = google_container_cluster.this.id
  location = var.region

  autoscaling {
    min_node_count = var.spot_min_nodes
    max_node_count = var.spot_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    spot            = true
    machine_type    = var.spot_machine_type
    image_type      = "COS_CONTAINERD"
    disk_size_gb    = var.disk_size_gb
    disk_type       = "pd-balanced"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = merge(local.labels, local.spot_labels)

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}

resource "google_container_node_pool" "on_demand" {
  project    = var.project_id
  name       = "couchbase-data"
  cluster    = google_container_cluster.this.id
  location   = var.region
  node_count = var.on_demand_nodes_per_zone

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    spot            = false
    machine_type    = var.on_demand_machine_type
    image_type      = "COS_CONTAINERD"
    disk_size_gb    = var.disk_size_gb
    disk_type       = "pd-balanced"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = merge(local.labels, local.on_demand_labels)

    taint {
      key    = local.on_demand_taint.key
      value  = local.on_demand_taint.value
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }
  }
}
