# The wojak release: engine (native sidecar) + one source sidecar per pod,
# installed from the repository's own chart. Cloud identity comes only from
# the service account annotations (IRSA / GKE Workload Identity / Azure
# workload identity); the Couchbase credentials come from a secret.

locals {
  chart_path = coalesce(var.chart_path, "${path.module}/../../../charts/wojak")

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
      source       = merge({ type = var.source_type }, var.source_values)
      engine = {
        store = var.store_url
        storeCredentials = {
          secretName  = kubernetes_secret_v1.store.metadata[0].name
          usernameKey = "username"
          passwordKey = "password"
        }
        venue = var.venue_url
      }
    },
    { for k, v in { image = { tag = var.image_tag } } : k => v if var.image_tag != null },
    var.extra_values,
  )
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "wojak"
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
}
