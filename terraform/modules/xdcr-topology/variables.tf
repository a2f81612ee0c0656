variable "topology" {
  type = object({
    clusters = list(string)
    failover = optional(object({
      engines_stopped = optional(set(string), [])
      isolated        = optional(set(string), [])
      promoted        = optional(map(string), {})
    }), {})
  })
  description = "The clusters and where each one's scope is written. `clusters`: the cluster names, each also the name of its home scope and its engines' WOJAK_ENGINE_CLUSTER (the `home` of the risk config). `failover` (terraform/README.md, \"Fail-over\"): `engines_stopped` clusters run no wojak engine (fenced); `isolated` clusters neither send nor receive XDCR (their replications are paused and their peers' firewalls drop their XDCR traffic); `promoted` maps a scope to the surviving cluster that now writes it instead of its home."

  validation {
    condition = length(var.topology.clusters) >= 2 && length(distinct(var.topology.clusters)) == length(var.topology.clusters) && alltrue([
      for c in var.topology.clusters : can(regex("^[a-z][a-z0-9-]{0,29}$", c))
    ])
    error_message = "topology.clusters: two or more distinct names of 1-30 lower-case letters, digits and dashes, starting with a letter (each is also a Couchbase scope and a Kubernetes resource name)."
  }

  validation {
    condition = alltrue([
      for c in concat(
        tolist(var.topology.failover.engines_stopped),
        tolist(var.topology.failover.isolated),
        keys(var.topology.failover.promoted),
        values(var.topology.failover.promoted),
      ) : contains(var.topology.clusters, c)
    ])
    error_message = "topology.failover names a cluster that is not in topology.clusters."
  }

  validation {
    condition     = alltrue([for scope, cluster in var.topology.failover.promoted : scope != cluster])
    error_message = "topology.failover.promoted: a scope is promoted to a cluster other than its home (remove the entry to give it back)."
  }

  validation {
    condition     = alltrue([for scope, cluster in var.topology.failover.promoted : contains(var.topology.failover.engines_stopped, scope)])
    error_message = "topology.failover.promoted: fence the old home first: a promoted scope's home cluster must be in engines_stopped (two writers of one scope would race over XDCR)."
  }

  validation {
    condition     = alltrue([for scope, cluster in var.topology.failover.promoted : !contains(keys(var.topology.failover.promoted), cluster)])
    error_message = "topology.failover.promoted: the surviving cluster's own scope cannot be promoted elsewhere at the same time."
  }

  validation {
    condition = alltrue([for scope, cluster in var.topology.failover.promoted :
      !contains(var.topology.failover.isolated, cluster) && !contains(var.topology.failover.engines_stopped, cluster)
    ])
    error_message = "topology.failover.promoted: promote a scope only to a cluster that is neither isolated nor fenced."
  }
}
