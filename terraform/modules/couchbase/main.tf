# Couchbase on Kubernetes through the Couchbase Autonomous Operator chart.
# Data pods (the source of truth) run on the tainted on-demand pool; query
# and index pods, the operator and its admission controller run on spot.
# Every credential is generated here and only ever lives in Kubernetes
# secrets and (sensitive) Terraform state.

locals {
  srv_host      = "${var.cluster_name}-srv.${var.namespace}.svc"
  xdcr_username = "xdcr"

  # The scoped layout (multi-cloud): every scope of `scopes` holds one
  # collection for the wojak store; this cluster's engines write only
  # `scopes.written`, the rest are read-only replicas of its peers' scopes.
  scoped         = var.scopes != null
  written_scopes = local.scoped ? var.scopes.written : []
  scope_names    = local.scoped ? sort(distinct(concat(var.scopes.written, var.scopes.replicas))) : []
  collection     = local.scoped ? var.scopes.collection : null
  app_group      = "${var.app_username}-${var.cluster_name}"

  # Scoped: the wojak user reads the wojak scopes and writes only those this
  # cluster writes (the chart's autobind users cannot carry scoped roles, so
  # the group and its binding are chart `groups` / `rolebindings`).
  app_scoped_roles = concat(
    [{
      name   = "data_reader"
      bucket = var.bucket_name
      scopes = { resources = [for s in local.scope_names : { kind = "CouchbaseScope", name = s }] }
    }],
    [for r in [{
      name   = "data_writer"
      bucket = var.bucket_name
      scopes = { resources = [for s in local.written_scopes : { kind = "CouchbaseScope", name = s }] }
    }] : r if length(local.written_scopes) > 0],
  )

  # Chart values only the scoped layout has (absent otherwise, so a single
  # cluster's release is unchanged): the scopes and their collection, named
  # by their key (the chart uses it as both the Kubernetes and the Couchbase
  # name), and the wojak user's group and binding.
  scoped_values = {
    for k, v in {
      scopes = {
        for s in local.scope_names : s => {
          collections = {
            managed   = true
            resources = [{ kind = "CouchbaseCollection", name = local.collection }]
          }
        }
      }
      collections = { (coalesce(local.collection, "engine")) = {} }
      groups      = { (local.app_group) = { roles = local.app_scoped_roles } }
      rolebindings = {
        (local.app_group) = {
          subjects = [{ kind = "CouchbaseUser", name = var.app_username }]
          roleRef  = { kind = "CouchbaseGroup", name = local.app_group }
        }
      }
    } : k => v if local.scoped
  }

  data_pod_spec = {
    nodeSelector = var.data_node_selector
    tolerations  = var.data_tolerations
  }
  spot_pod_spec = {
    nodeSelector = var.spot_node_selector
    tolerations  = var.spot_tolerations
  }

  remote_clusters = [for r in var.xdcr_remote_clusters : {
    name                 = r.name
    uuid                 = r.uuid
    hostname             = r.hostname
    authenticationSecret = "xdcr-remote-${r.name}"
    replications = {
      selector = {
        matchLabels = { "wojak.io/xdcr-remote" = r.name }
      }
    }
  }]

  values = {
    install = {
      couchbaseOperator   = true
      admissionController = true
      couchbaseCluster    = true
      syncGateway         = false
    }
    couchbaseOperator   = local.spot_pod_spec
    admissionController = local.spot_pod_spec

    # Replace the chart's example bucket with the wojak bucket.
    buckets = {
      default = null
      (var.bucket_name) = merge(
        {
          name        = var.bucket_name
          kind        = "CouchbaseBucket"
          memoryQuota = var.bucket_memory_quota
          replicas    = var.bucket_replicas
          # Fixed when the bucket is created. With one writer per scope no
          # document is written on two clusters, so XDCR never has a conflict
          # to resolve; lww stays because changing it means a new bucket.
          conflictResolution = "lww"
          evictionPolicy     = "valueOnly"
          compressionMode    = "passive"
          ioPriority         = "high"
          enableFlush        = false
        },
        # Managed scopes: the operator creates these and deletes any other
        # user scope (the default scope and collection always stay).
        {
          for k, v in {
            scopes = {
              managed   = true
              resources = [for s in local.scope_names : { kind = "CouchbaseScope", name = s }]
            }
          } : k => v if local.scoped
        },
      )
    }

    users = {
      # Unscoped (one cluster): bucket-wide roles through the chart's
      # autobind group; scoped: the group above.
      (var.app_username) = {
        autobind   = !local.scoped
        authDomain = "local"
        authSecret = kubernetes_secret_v1.app.metadata[0].name
        roles = [
          { name = "data_reader", bucket = var.bucket_name },
          { name = "data_writer", bucket = var.bucket_name },
        ]
      }
      (local.xdcr_username) = {
        autobind   = true
        authDomain = "local"
        authSecret = kubernetes_secret_v1.xdcr.metadata[0].name
        roles = [
          { name = "replication_target", bucket = var.bucket_name },
        ]
      }
    }

    cluster = {
      name         = var.cluster_name
      image        = var.server_image
      antiAffinity = true

      security = {
        adminSecret = kubernetes_secret_v1.admin.metadata[0].name
        rbac = {
          managed = true
        }
      }

      cluster = {
        dataServiceMemoryQuota  = var.data_service_memory_quota
        indexServiceMemoryQuota = var.index_service_memory_quota
        queryServiceMemoryQuota = var.query_service_memory_quota
        indexStorageSetting     = "plasma"
        autoFailoverTimeout     = "30s"
        autoFailoverMaxCount    = 1
      }

      # The exposed-feature keys are added only when asked for (a for
      # expression keeps both shapes one object type).
      networking = merge(
        { exposeAdminConsole = false },
        {
          for k, v in {
            exposedFeatures               = ["xdcr"]
            exposedFeatureServiceTemplate = var.xdcr_service_template
          } : k => v if var.expose_xdcr
        },
      )

      servers = {
        default = null
        data = {
          size         = var.data_size
          services     = ["data"]
          volumeMounts = { default = "couchbase", data = "couchbase" }
          pod          = { spec = local.data_pod_spec }
        }
        index = {
          size     = var.index_size
          services = ["index"]
          pod      = { spec = local.spot_pod_spec }
        }
        query = {
          size     = var.query_size
          services = ["query"]
          pod      = { spec = local.spot_pod_spec }
        }
      }

      volumeClaimTemplates = [{
        metadata = { name = "couchbase" }
        spec = {
          storageClassName = var.storage_class_name
          resources        = { requests = { storage = var.data_volume_size } }
        }
      }]

      xdcr = {
        managed        = length(local.remote_clusters) > 0
        remoteClusters = local.remote_clusters
      }
    }
  }

  # What the chart gets: the values above plus, scoped, the scope resources.
  chart_values = merge(local.values, local.scoped_values)
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "wojak"
    }
  }
}

# ------------------------------------------------------ credentials ------

resource "random_password" "admin" {
  length           = 32
  special          = true
  override_special = "-_.~"
  min_lower        = 2
  min_upper        = 2
  min_numeric      = 2
}

resource "random_password" "app" {
  length           = 32
  special          = true
  override_special = "-_.~"
  min_lower        = 2
  min_upper        = 2
  min_numeric      = 2
}

resource "random_password" "xdcr" {
  length           = 32
  special          = true
  override_special = "-_.~"
  min_lower        = 2
  min_upper        = 2
  min_numeric      = 2
}

resource "kubernetes_secret_v1" "admin" {
  metadata {
    name      = "${var.cluster_name}-admin"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = {
    username = var.admin_username
    password = random_password.admin.result
  }
  type = "Opaque"
}

resource "kubernetes_secret_v1" "app" {
  metadata {
    name      = "${var.cluster_name}-user-${var.app_username}"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = {
    password = random_password.app.result
  }
  type = "Opaque"
}

resource "kubernetes_secret_v1" "xdcr" {
  metadata {
    name      = "${var.cluster_name}-user-${local.xdcr_username}"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = {
    password = random_password.xdcr.result
  }
  type = "Opaque"
}

# Credentials this cluster presents to each XDCR peer.
resource "kubernetes_secret_v1" "xdcr_remote" {
  for_each = toset([for r in var.xdcr_remote_clusters : r.name])

  metadata {
    name      = "xdcr-remote-${each.value}"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = {
    username = var.xdcr_remote_username
    password = var.xdcr_remote_passwords[each.value]
  }
  type = "Opaque"
}

# ------------------------------------------------- operator + cluster ----

resource "helm_release" "couchbase" {
  name       = var.release_name
  namespace  = kubernetes_namespace_v1.this.metadata[0].name
  repository = "https://couchbase-partners.github.io/helm-charts/"
  chart      = "couchbase-operator"
  version    = var.chart_version
  values     = [yamlencode(local.chart_values)]
  wait       = true
  timeout    = 1200

  depends_on = [
    kubernetes_secret_v1.admin,
    kubernetes_secret_v1.app,
    kubernetes_secret_v1.xdcr,
    kubernetes_secret_v1.xdcr_remote,
  ]

  lifecycle {
    precondition {
      condition     = length(var.xdcr_remote_clusters) == 0 || local.scoped
      error_message = "XDCR needs the scoped layout (scopes): replicating the whole bucket would carry every document both ways."
    }
  }
}

# ---------------------------------------------------------------- XDCR ---

# One replication of the bucket per peer (XDCR allows one per bucket pair);
# the CouchbaseCluster's xdcr.remoteClusters[].replications selector picks it
# up by label. It carries only the scopes this cluster writes, each into the
# scope of the same name on the peer (a read-only replica there), through an
# explicit mapping: without one XDCR maps every keyspace present on both
# sides, which would send this cluster's replicas of the peer's scopes back
# into the scopes the peer writes. A cluster that writes nothing (its scope
# was failed over elsewhere) replicates nothing.
resource "kubernetes_manifest" "replication" {
  for_each = { for r in var.xdcr_remote_clusters : r.name => r if length(local.written_scopes) > 0 }

  manifest = {
    apiVersion = "couchbase.com/v2"
    kind       = "CouchbaseReplication"
    metadata = {
      name      = "${var.bucket_name}-to-${each.key}"
      namespace = kubernetes_namespace_v1.this.metadata[0].name
      labels    = { "wojak.io/xdcr-remote" = each.key }
    }
    explicitMapping = {
      allowRules = [for s in local.written_scopes : {
        sourceKeyspace = { scope = s }
        targetKeyspace = { scope = s }
      }]
    }
    spec = {
      bucket          = var.bucket_name
      remoteBucket    = each.value.remote_bucket
      compressionType = "Auto" # the CRD accepts None or Auto (Auto negotiates Snappy)
      paused          = each.value.paused
    }
  }

  depends_on = [helm_release.couchbase]
}
