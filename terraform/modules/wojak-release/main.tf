# The wojak release: engine (native sidecar) + one source sidecar per pod,
# installed from the repository's own chart. Cloud identity comes only from
# the service account annotations (IRSA / GKE Workload Identity / Azure
# workload identity); the Couchbase credentials come from a secret.

locals {
  chart_path = coalesce(var.chart_path, "${path.module}/../../../charts/wojak")

  # The engine's store: the bucket-level URL, narrowed to this cluster's own
  # scope and collection in a multi-cloud deployment (one writer per scope).
  store = var.store_scope == null ? var.store_url : "${var.store_url}&scope=${var.store_scope}&collection=${var.store_collection}"

  values = merge(
    {
      replicaCount = var.replica_count
      serviceAccount = {
        create      = true
        name        = var.service_account_name
        annotations = var.service_account_annotations
      }
      podLabels    = var.pod_labels
      nodeSelector = var.node_selector
      tolerations  = var.tolerations
      source       = merge({ type = var.source_type, accounts = var.source_accounts }, var.source_values)
      engine = merge(
        {
          store = local.store
          storeCredentials = {
            secretName  = kubernetes_secret_v1.store.metadata[0].name
            usernameKey = "username"
            passwordKey = "password"
          }
          venue = var.venue_url
          # The engine refuses plain-text couchbase:// off loopback unless told: the in-cluster
          # Couchbase of modules/couchbase serves no TLS, and its traffic stays inside the
          # cluster network. A couchbases:// store_url keeps the engine's refusal on.
          allowInsecureTransport = startswith(var.store_url, "couchbase://")
        },
        # The chart sets WOJAK_ENGINE_CLUSTER from it: the engines then refuse
        # every account the risk config homes on another cluster.
        { for k, v in { cluster = var.engine_cluster } : k => v if var.engine_cluster != null },
      )
    },
    { for k, v in { image = { tag = var.image_tag } } : k => v if var.image_tag != null },
    # Fail closed: the engines never run without limits. The whole risk file, or the ConfigMap
    # someone keeps (a RiskPolicy's, rendered by the operator).
    { risk = merge(
      { for k, v in { config = var.risk_config } : k => v if var.risk_config != null },
      { for k, v in { existingConfigMap = var.risk_config_map } : k => v if var.risk_config == null },
    ) },
    var.extra_values,
  )
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "wojak"
      # Pod Security "restricted", enforced: the chart's pods comply, anything else is refused
      "pod-security.kubernetes.io/enforce" = "restricted"
      "pod-security.kubernetes.io/audit"   = "restricted"
      "pod-security.kubernetes.io/warn"    = "restricted"
    }
  }
}

resource "kubernetes_secret_v1" "store" {
  metadata {
    name      = "${var.release_name}-store"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = {
    username = var.store_username
    password = var.store_password
  }
  type = "Opaque"
}

resource "helm_release" "wojak" {
  name      = var.release_name
  namespace = kubernetes_namespace_v1.this.metadata[0].name
  chart     = local.chart_path
  values    = [yamlencode(local.values)]
  wait      = true
  timeout   = 600

  lifecycle {
    precondition {
      condition     = var.engine_cluster == null || var.store_scope != null
      error_message = "engine_cluster needs store_scope: a named cluster's engines write only their own scope, never the shared default collection."
    }
    precondition {
      condition     = (var.store_scope == null) == (var.store_collection == null)
      error_message = "store_scope and store_collection go together."
    }
    precondition {
      condition     = var.store_scope == null || (strcontains(var.store_url, "?bucket=") && !strcontains(var.store_url, "scope="))
      error_message = "With store_scope, store_url is the bucket-level URL (couchbase://HOST?bucket=NAME) without a scope of its own."
    }
  }
}
