# Who writes which scope, and which XDCR replications follow from it.
#
# Every cluster of a multi-cloud deployment has a home scope named after it in
# the shared bucket; its wojak engines (WOJAK_ENGINE_CLUSTER = its name) write
# only that scope, and every peer holds a read-only replica of it. So every
# scope has exactly one writer, and a replication carries only scopes its
# source writes, never one its target writes: no document is written on two
# clusters, and none travels both ways.
#
# A fail-over (terraform/README.md) moves a scope's writer to a survivor
# (`promoted`), after its old home has been fenced (`engines_stopped`) and cut
# off from XDCR (`isolated`).

locals {
  clusters = var.topology.clusters
  failover = var.topology.failover

  # scope => the one cluster that writes it.
  writers = { for scope in local.clusters : scope => lookup(local.failover.promoted, scope, scope) }

  written_scopes = { for c in local.clusters : c => sort([for scope, writer in local.writers : scope if writer == c]) }
  replica_scopes = { for c in local.clusters : c => sort([for scope, writer in local.writers : scope if writer != c]) }

  # The cluster's own wojak release (cluster = scope = its name) runs only
  # while it is not fenced and still writes its home scope.
  engines_enabled = {
    for c in local.clusters : c => !contains(local.failover.engines_stopped, c) && local.writers[c] == c
  }

  # source => target => paused: nothing travels from or to an isolated cluster.
  replication_paused = {
    for source in local.clusters : source => {
      for target in local.clusters : target => contains(local.failover.isolated, source) || contains(local.failover.isolated, target)
      if target != source
    }
  }

  # A source that writes no scope has no replication at all: an empty explicit
  # mapping would fall back to XDCR's implicit mapping of every keyspace.
  replications = flatten([
    for source in local.clusters : [
      for target in local.clusters : {
        source = source
        target = target
        scopes = local.written_scopes[source]
        paused = local.replication_paused[source][target]
      } if target != source
    ] if length(local.written_scopes[source]) > 0
  ])

  # target => peers whose XDCR traffic the target's firewall admits.
  xdcr_admitted = {
    for target in local.clusters : target => [
      for source in local.clusters : source if source != target && !contains(local.failover.isolated, source)
    ]
  }
}
