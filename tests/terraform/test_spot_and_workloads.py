"""Spot capacity in every cloud, Couchbase placement and the wojak release values."""

import re

from .conftest import (
    ENVIRONMENTS_ROOT,
    MODULES_ROOT,
    first,
    named_blocks,
    parse_dir,
    resources,
)


def _variable_default(parsed, name):
    return dict(named_blocks(parsed, "variable"))[name].get("default")


def _var_name(expr: str) -> str:
    match = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", expr)
    assert match, f"expected a var reference, got {expr!r}"
    return match.group(1)


# ------------------------------------------------------------------ AWS ---

def test_eks_has_a_spot_node_group_with_several_instance_types():
    parsed = parse_dir(MODULES_ROOT / "aws-eks-spot")
    groups = dict(resources(parsed, "aws_eks_node_group"))
    spot = groups["spot"]
    assert spot["capacity_type"] == "SPOT"
    types = _variable_default(parsed, _var_name(spot["instance_types"]))
    assert len(types) >= 3, "diversify spot instance types"
    assert "taint" not in spot


def test_eks_has_a_tainted_on_demand_group_for_couchbase_data():
    parsed = parse_dir(MODULES_ROOT / "aws-eks-spot")
    on_demand = dict(resources(parsed, "aws_eks_node_group"))["on_demand"]
    assert on_demand["capacity_type"] == "ON_DEMAND"
    taint = first(on_demand, "taint")
    assert taint["effect"] == "NO_SCHEDULE"
    assert "couchbase-data" in str(parsed["locals"])


def test_eks_nodes_use_imdsv2_and_encrypted_volumes():
    parsed = parse_dir(MODULES_ROOT / "aws-eks-spot")
    [(_, template)] = resources(parsed, "aws_launch_template")
    assert first(template, "metadata_options")["http_tokens"] == "required"
    ebs = first(first(template, "block_device_mappings"), "ebs")
    assert ebs["encrypted"] is True
    cluster = dict(resources(parsed, "aws_eks_cluster"))["this"]
    assert first(cluster, "encryption_config")["resources"] == ["secrets"]


def _stack_call(env, name):
    """The environment's call of modules/<name>-stack (where each cloud's composition lives)."""
    modules = dict(named_blocks(parse_dir(ENVIRONMENTS_ROOT / env), "module"))
    call = modules[f"{name}_stack"]
    assert call["source"] == f"../../modules/{name}-stack", f"{env}: {call['source']}"
    return call


def test_aws_spot_interruption_handling():
    # environments/aws and environments/multi-cloud both run the AWS stack.
    for env in ("aws", "multi-cloud"):
        assert _stack_call(env, "aws").get("enable_node_termination_handler", True) is not False
    releases = dict(resources(parse_dir(MODULES_ROOT / "aws-stack"), "helm_release"))
    nth = releases["node_termination_handler"]
    assert nth["chart"] == "aws-node-termination-handler"
    assert "enableSpotInterruptionDraining = true" in nth["values"][0]


def test_sandbox_lambda_is_built_from_the_package_zip():
    parsed = parse_dir(MODULES_ROOT / "aws-wojak-services")
    fn = dict(resources(parsed, "aws_lambda_function"))["sandbox"]
    assert fn["handler"] == "wojak.engine.venue.sandbox.handler"
    assert fn["filename"] == "${var.sandbox_lambda_zip}"
    assert "filebase64sha256(var.sandbox_lambda_zip)" in fn["source_code_hash"]
    runtime = _variable_default(parsed, _var_name(fn["runtime"]))
    major, minor = map(int, runtime.removeprefix("python").split("."))
    assert (major, minor) >= (3, 11)
    assert "reserved_concurrent_executions" in fn
    assert first(fn, "dead_letter_config")["target_arn"] == "${aws_sqs_queue.sandbox_dlq.arn}"
    assert fn["kms_key_arn"] == "${aws_kms_key.data.arn}"


def test_aws_messaging_is_kms_encrypted_with_a_redrive_policy():
    parsed = parse_dir(MODULES_ROOT / "aws-wojak-services")
    queues = dict(resources(parsed, "aws_sqs_queue"))
    assert {"orders", "orders_dlq", "sandbox_dlq"} <= set(queues)
    for name, queue in queues.items():
        assert queue["kms_master_key_id"] == "${aws_kms_key.data.arn}", name
    redrive = queues["orders"]["redrive_policy"]
    assert "deadLetterTargetArn = aws_sqs_queue.orders_dlq.arn" in redrive
    assert "maxReceiveCount" in redrive
    [(_, topic)] = resources(parsed, "aws_sns_topic")
    assert topic["kms_master_key_id"] == "${aws_kms_key.data.arn}"
    [(_, stream)] = resources(parsed, "aws_kinesis_stream")
    assert stream["encryption_type"] == "KMS"
    assert stream["kms_key_id"] == "${aws_kms_key.data.arn}"
    for _, key in resources(parsed, "aws_kms_key"):
        assert key["enable_key_rotation"] is True


# ------------------------------------------------------------------ GCP ---

def test_gke_has_a_spot_pool_and_a_tainted_on_demand_pool():
    parsed = parse_dir(MODULES_ROOT / "gcp-gke-spot")
    pools = dict(resources(parsed, "google_container_node_pool"))
    spot_cfg = first(pools["spot"], "node_config")
    assert spot_cfg["spot"] is True
    assert "autoscaling" in pools["spot"]
    od_cfg = first(pools["on_demand"], "node_config")
    assert od_cfg.get("spot", False) is False
    assert first(od_cfg, "taint")["effect"] == "NO_SCHEDULE"
    for cfg in (spot_cfg, od_cfg):
        assert first(cfg, "workload_metadata_config")["mode"] == "GKE_METADATA"
    cluster = dict(resources(parsed, "google_container_cluster"))["this"]
    assert first(cluster, "workload_identity_config")["workload_pool"] == "${var.project_id}.svc.id.goog"
    assert cluster["remove_default_node_pool"] is True


def test_pubsub_subscription_has_dead_letter_and_retry_policies():
    parsed = parse_dir(MODULES_ROOT / "gcp-wojak-pubsub")
    subs = dict(resources(parsed, "google_pubsub_subscription"))
    orders = subs["orders"]
    dlp = first(orders, "dead_letter_policy")
    assert dlp["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "max_delivery_attempts" in dlp
    retry = first(orders, "retry_policy")
    assert {"minimum_backoff", "maximum_backoff"} <= set(retry)
    for _, topic in resources(parsed, "google_pubsub_topic"):
        assert topic["kms_key_name"] == "${google_kms_crypto_key.pubsub.id}"


# ---------------------------------------------------------------- Azure ---

def test_aks_has_a_spot_pool_and_a_tainted_on_demand_pool():
    parsed = parse_dir(MODULES_ROOT / "azure-aks-spot")
    pools = dict(resources(parsed, "azurerm_kubernetes_cluster_node_pool"))
    spot = pools["spot"]
    assert spot["priority"] == "Spot"
    assert "eviction_policy" in spot and "spot_max_price" in spot
    assert _variable_default(parsed, _var_name(spot["eviction_policy"])) in ("Delete", "Deallocate")
    assert _variable_default(parsed, _var_name(spot["spot_max_price"])) == -1
    on_demand = pools["on_demand"]
    assert on_demand["priority"] == "Regular"
    assert on_demand["node_taints"]
    cluster = dict(resources(parsed, "azurerm_kubernetes_cluster"))["this"]
    assert cluster["workload_identity_enabled"] is True
    assert cluster["oidc_issuer_enabled"] is True
    assert cluster["local_account_disabled"] is True


def test_azure_workload_identity_is_bound_to_the_wojak_service_account():
    parsed = parse_dir(ENVIRONMENTS_ROOT / "azure")
    [(_, cred)] = resources(parsed, "azurerm_federated_identity_credential")
    assert cred["subject"] == "system:serviceaccount:${local.wojak_namespace}:${local.wojak_service_account}"
    assert cred["audience"] == ["api://AzureADTokenExchange"]


# ------------------------------------------------------------ Couchbase ---

def test_couchbase_operator_chart_and_placement():
    parsed = parse_dir(MODULES_ROOT / "couchbase")
    release = dict(resources(parsed, "helm_release"))["couchbase"]
    assert release["repository"] == "https://couchbase-partners.github.io/helm-charts/"
    assert release["chart"] == "couchbase-operator"
    assert release["version"] == "${var.chart_version}"
    locals_text = str(parsed["locals"])
    # Data on the on-demand pool, query and index on spot.
    assert re.search(r"'data': \{'size': '\$\{var.data_size\}', 'services': \['data'\].*?local.data_pod_spec", locals_text)
    assert re.search(r"'index': \{'size': '\$\{var.index_size\}', 'services': \['index'\], 'pod': \{'spec': '\$\{local.spot_pod_spec", locals_text)
    assert re.search(r"'query': \{'size': '\$\{var.query_size\}', 'services': \['query'\], 'pod': \{'spec': '\$\{local.spot_pod_spec", locals_text)


def test_couchbase_credentials_come_from_random_password_secrets():
    parsed = parse_dir(MODULES_ROOT / "couchbase")
    passwords = dict(resources(parsed, "random_password"))
    assert {"admin", "app", "xdcr"} <= set(passwords)
    secrets = dict(resources(parsed, "kubernetes_secret_v1"))
    assert secrets["admin"]["data"]["password"] == "${random_password.admin.result}"
    assert secrets["app"]["data"]["password"] == "${random_password.app.result}"
    assert "adminSecret = kubernetes_secret_v1.admin.metadata[0].name" in str(parsed["locals"]) or (
        "'adminSecret': '${kubernetes_secret_v1.admin.metadata[0].name}'" in str(parsed["locals"])
    )


def test_multi_cloud_wires_xdcr_to_each_peer():
    # Each stack's Couchbase cluster takes its XDCR settings from the stack's inputs (what
    # each replication carries, one way: tests/terraform/test_one_writer_per_scope.py) ...
    for stack in ("aws-stack", "gcp-stack"):
        couchbase = dict(named_blocks(parse_dir(MODULES_ROOT / stack), "module"))["couchbase"]
        assert couchbase["source"] == "../couchbase", stack
        for key in ("expose_xdcr", "xdcr_remote_clusters", "xdcr_remote_passwords"):
            assert couchbase[key] == f"${{var.{key}}}", (stack, key)
    # ... and multi-cloud hands each stack the other one's cluster and password.
    aws_cb, gcp_cb = _stack_call("multi-cloud", "aws"), _stack_call("multi-cloud", "gcp")
    assert "module.gcp_stack.couchbase_xdcr_password" in aws_cb["xdcr_remote_passwords"]
    assert "module.aws_stack.couchbase_xdcr_password" in gcp_cb["xdcr_remote_passwords"]
    assert "name = \"gcp\"" in aws_cb["xdcr_remote_clusters"] or "gcp" in aws_cb["xdcr_remote_clusters"]
    assert aws_cb["expose_xdcr"] is True and gcp_cb["expose_xdcr"] is True
    manifests = dict(resources(parse_dir(MODULES_ROOT / "couchbase"), "kubernetes_manifest"))
    assert manifests["replication"]["manifest"]["kind"] == "CouchbaseReplication"


# ---------------------------------------------------------------- wojak ---

def test_wojak_release_passes_the_documented_values():
    parsed = parse_dir(MODULES_ROOT / "wojak-release")
    release = dict(resources(parsed, "helm_release"))["wojak"]
    assert release["chart"] == "${local.chart_path}"
    assert "../../../charts/wojak" in str(parsed["locals"])
    values = parsed["locals"][0]["values"]
    for needle in (
        "serviceAccount = {create = true, name = var.service_account_name, "
        "annotations = var.service_account_annotations}",
        "source = merge({type = var.source_type, accounts = var.source_accounts}, var.source_values)",
        "store = local.store",
        "venue = var.venue_url",
        "{for k, v in {cluster = var.engine_cluster} : k => v if var.engine_cluster != null}",
    ):
        assert needle in values, needle
    # engine.store is the bucket-level URL, narrowed to the cluster's own scope and collection.
    assert parsed["locals"][0]["store"] == (
        '${var.store_scope == null ? var.store_url : '
        '"${var.store_url}&scope=${var.store_scope}&collection=${var.store_collection}"}'
    )
    source_type = dict(named_blocks(parsed, "variable"))["source_type"]
    allowed = re.findall(r'"(\w+)"', source_type["validation"][0]["condition"])
    assert sorted(allowed) == sorted(["http", "rabbitmq", "kafka", "sqs", "sns", "pubsub", "kinesis"])


def test_each_cloud_annotates_the_service_account_for_its_identity():
    expected = {
        "aws": "eks.amazonaws.com/role-arn",
        "gcp": "iam.gke.io/gcp-service-account",
        "azure": "azure.workload.identity/client-id",
    }
    # AWS and GCP compose wojak in their stack modules, used by their roots and by multi-cloud.
    where = {"aws": MODULES_ROOT / "aws-stack", "gcp": MODULES_ROOT / "gcp-stack", "azure": ENVIRONMENTS_ROOT / "azure"}
    for env, annotation in expected.items():
        modules = dict(named_blocks(parse_dir(where[env]), "module"))
        annotations = modules["wojak"]["service_account_annotations"]
        assert annotation in annotations, f"{env}: {annotations}"
    for cloud in ("aws", "gcp"):
        _stack_call(cloud, cloud)
        _stack_call("multi-cloud", cloud)


def test_wojak_store_and_venue_urls():
    for where in (MODULES_ROOT / "aws-stack", MODULES_ROOT / "gcp-stack", ENVIRONMENTS_ROOT / "azure"):
        wojak = dict(named_blocks(parse_dir(where), "module"))["wojak"]
        assert wojak["store_url"] == "${module.couchbase.connection_string}"
    aws = dict(named_blocks(parse_dir(MODULES_ROOT / "aws-stack"), "module"))["wojak"]
    assert aws["venue_url"].startswith("lambda://${module.services.sandbox_function_name}?region=")
    outputs = dict(named_blocks(parse_dir(MODULES_ROOT / "couchbase"), "output"))
    assert outputs["connection_string"]["value"] == "couchbase://${local.srv_host}?bucket=${var.bucket_name}"
    aws_locals = str(parse_dir(MODULES_ROOT / "aws-stack")["locals"])
    assert "queueUrl" in aws_locals
    gcp_locals = str(parse_dir(MODULES_ROOT / "gcp-stack")["locals"])
    assert "'subscription': '${module.pubsub.orders_subscription_id}'" in gcp_locals
