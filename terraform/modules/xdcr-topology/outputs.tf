output "writers" {
  description = "Scope => the one cluster whose engines write it."
  value       = local.writers
}

output "written_scopes" {
  description = "Cluster => the scopes it writes (its home scope, plus any promoted to it); they replicate to every peer."
  value       = local.written_scopes
}

output "replica_scopes" {
  description = "Cluster => the scopes it holds read-only, written elsewhere and received over XDCR."
  value       = local.replica_scopes
}

output "engines_enabled" {
  description = "Cluster => whether its own wojak release runs (false: fenced, replicas scaled to zero)."
  value       = local.engines_enabled
}

output "replication_paused" {
  description = "Source cluster => target cluster => whether that replication is paused."
  value       = local.replication_paused
}

output "replications" {
  description = "Every replication: source, target, the scopes it carries (explicit mapping, each to the scope of the same name) and whether it is paused."
  value       = local.replications
}

output "xdcr_admitted" {
  description = "Target cluster => the peers whose XDCR traffic its firewall admits (isolated clusters are dropped)."
  value       = local.xdcr_admitted
}
