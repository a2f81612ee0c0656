terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  # Pure computation: no provider, no resource. `terraform console` evaluates
  # it offline, which is how tests/terraform checks the topology.
  required_providers {}
}
