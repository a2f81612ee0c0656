"""IAM is scoped to the project's own resources; no credential is committed."""

import re

import hcl2
import pytest

from .conftest import (
    ENVIRONMENTS_ROOT,
    MODULES_ROOT,
    OPTIONS,
    TERRAFORM_ROOT,
    all_resources,
    parse_dir,
    resources,
)

# Actions that touch data (as opposed to account-wide, resource-less calls).
DATA_PLANE_PREFIXES = ("sqs:", "sns:", "kinesis:", "lambda:", "kms:", "logs:", "s3:", "dynamodb:", "secretsmanager:")
# A resource reference to something this Terraform code creates.
OWN_ARN = re.compile(r"^\$\{aws_[a-z0-9_]+\.[a-z0-9_]+\.arn\}(:\*)?$")


def _policy_document(expr: str) -> dict:
    """Parse `jsonencode({...})` (as python-hcl2 renders it) into a dict."""
    assert expr.startswith("${jsonencode(") and expr.endswith(")}"), expr[:60]
    inner = expr[len("${jsonencode(") : -2]
    return hcl2.loads(f"x = {inner}\n", serialization_options=OPTIONS)["x"]


def _as_list(value):
    return value if isinstance(value, list) else [value]


def iam_policies():
    """(where, document) of every identity policy in the tree."""
    found = []
    for directory, rtype, name, body in all_resources():
        if rtype in ("aws_iam_role_policy", "aws_iam_policy"):
            found.append((f"{directory.name}:{rtype}.{name}", _policy_document(body["policy"])))
    return found


def test_identity_policies_exist():
    names = [where for where, _ in iam_policies()]
    assert any("aws_iam_role_policy.wojak" in n for n in names)
    assert any("aws_iam_role_policy.sandbox" in n for n in names)


def test_no_policy_document_data_sources():
    """Policies are inline jsonencode so the checks below see every statement."""
    assert not [r for r in all_resources("data") if r[1] == "aws_iam_policy_document"]


@pytest.mark.parametrize("where,document", iam_policies(), ids=[w for w, _ in iam_policies()])
def test_data_plane_statements_name_only_own_resources(where, document):
    for statement in _as_list(document["Statement"]):
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        assert not any(a == "*" or a.endswith(":*") for a in actions), f"{where}: wildcard action {actions}"
        resources_ = _as_list(statement["Resource"])
        if any(a.startswith(DATA_PLANE_PREFIXES) for a in actions):
            for resource in resources_:
                assert resource != "*", f"{where}: {statement.get('Sid')} grants data actions on *"
                assert OWN_ARN.match(resource), f"{where}: {resource} is not one of the project's own ARNs"


def test_wojak_irsa_role_covers_exactly_its_queue_topic_stream_function_and_key():
    parsed = parse_dir(MODULES_ROOT / "aws-wojak-services")
    document = _policy_document(dict(resources(parsed, "aws_iam_role_policy"))["wojak"]["policy"])
    granted = {r for s in document["Statement"] for r in _as_list(s["Resource"])}
    assert granted == {
        "${aws_sqs_queue.orders.arn}",
        "${aws_sqs_queue.orders_dlq.arn}",
        "${aws_sns_topic.orders.arn}",
        "${aws_kinesis_stream.orders.arn}",
        "${aws_dynamodb_table.kinesis_leases.arn}",
        "${aws_lambda_function.sandbox.arn}",
        "${aws_kms_key.data.arn}",
    }


def test_irsa_trust_is_limited_to_one_service_account():
    for module, role in (("aws-wojak-services", "wojak"), ("aws-eks-spot", "ebs_csi")):
        parsed = parse_dir(MODULES_ROOT / module)
        trust = _policy_document(dict(resources(parsed, "aws_iam_role"))[role]["assume_role_policy"])
        [statement] = trust["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        equals = statement["Condition"]["StringEquals"]
        subs = [v for k, v in equals.items() if k.endswith(":sub}") or k.endswith(":sub")]
        assert len(subs) == 1 and subs[0].startswith("system:serviceaccount:"), equals
        assert any(k.endswith(":aud") or k.endswith(":aud}") for k in equals)


def test_kms_key_policies_only_grant_scoped_service_principals():
    """Key policies say Resource "*" (= this key); their principals must be bounded."""
    for directory, rtype, name, body in all_resources():
        if rtype != "aws_kms_key":
            continue
        for statement in _policy_document(body["policy"])["Statement"]:
            principal = statement["Principal"]
            assert principal != "*" and principal.get("AWS") != "*", f"{directory.name}:{name}"
            if "Service" in principal and statement["Sid"] != "ControlPlaneLogs":
                assert "Condition" in statement or statement["Sid"] == "LambdaLogs", statement


def test_gcp_pubsub_iam_is_on_single_topics_and_subscriptions():
    kinds = {rtype for _, rtype, _, _ in all_resources()}
    # No project-wide or authoritative Pub/Sub grants.
    assert not {k for k in kinds if k.startswith("google_pubsub") and k.endswith(("_iam_binding", "_iam_policy"))}
    for directory, rtype, name, body in all_resources():
        if rtype.startswith("google_project_iam"):
            assert "pubsub" not in str(body.get("role", "")), f"{directory.name}:{name} grants Pub/Sub project-wide"
            assert "for_each" in body and "local.node_roles" in body["for_each"], f"unexpected project grant {name}"
        if rtype == "google_pubsub_subscription_iam_member":
            assert re.fullmatch(r"\$\{google_pubsub_subscription\.[a-z_]+\.name\}", body["subscription"]), name
        if rtype == "google_pubsub_topic_iam_member":
            assert re.fullmatch(r"\$\{google_pubsub_topic\.[a-z_]+\.name\}", body["topic"]), name


def test_gcp_workload_identity_binding_names_one_kubernetes_service_account():
    parsed = parse_dir(MODULES_ROOT / "gcp-wojak-pubsub")
    [(_, binding)] = resources(parsed, "google_service_account_iam_member")
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert binding["member"] == (
        "serviceAccount:${var.workload_identity_pool}[${var.namespace}/${var.service_account_name}]"
    )
    members = {b["member"] for _, b in resources(parsed, "google_pubsub_subscription_iam_member")}
    assert "${local.wojak_member}" in members


# ------------------------------------------------------ credential scan ---

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key setting": re.compile(r"(aws_secret_access_key|secret_key)\s*=", re.I),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GCP key file": re.compile(r"\"private_key(_id)?\"\s*:|credentials\s*=\s*file\(", re.I),
    "static provider key": re.compile(r"\b(access_key|client_secret|client_certificate_password)\s*=", re.I),
}
# `name = "literal"` (HCL) or `"name": "literal"` (JSON) assignments.
ASSIGNMENT = re.compile(r"\"?\b([A-Za-z_][\w.-]*)\"?\s*[=:]\s*\"([^\"\n]*)\"")
SENSITIVE_NAME = re.compile(r"password|passwd|secret|token|api_?key", re.I)
# Fields that name where a credential lives rather than holding one
# (passwordKey = "password", secretName = "...", token_file = "...")
# and the IMDSv2 switch http_tokens = "required".
REFERENCE_NAME = re.compile(r"(Key|Name|_name|_file|_path|_id|Ref)$|^http_tokens$")  # http_tokens: IMDSv2 mode


def scan(text: str) -> list[str]:
    hits = [label for label, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    for name, value in ASSIGNMENT.findall(text):
        if not SENSITIVE_NAME.search(name) or REFERENCE_NAME.search(name):
            continue
        if value and "${" not in value:  # a pure literal, not an interpolation
            hits.append(f"{name} literal")
    return hits


@pytest.mark.parametrize(
    "sample",
    [
        'access = "AKIAIOSFODNN7EXAMPLE"',
        'password = "hunter2hunter2"',
        'client_secret = "abc"',
        "-----BEGIN RSA PRIVATE KEY-----",
        'admin_secret = "s3cr3t"',
        'token = "ya29.abc"',
        'credentials = file("key.json")',
    ],
)
def test_scanner_catches_credentials(sample):
    assert scan(sample), sample


def test_scanner_allows_references():
    assert not scan("password = random_password.admin.result\npassword = var.store_password\n")
    assert not scan('password = "${random_password.admin.result}"')


def test_no_credential_literal_anywhere():
    offenders = []
    for path in sorted(TERRAFORM_ROOT.rglob("*")):
        if path.is_file() and ".terraform" not in path.parts:
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(TERRAFORM_ROOT)}: {hit}" for hit in scan(text)]
    assert not offenders, offenders


def test_provider_blocks_carry_no_static_credentials():
    for env in ("aws", "gcp", "azure", "multi-cloud"):
        for block in parse_dir(ENVIRONMENTS_ROOT / env).get("provider", []):
            for kind, configs in block.items():
                for config in configs if isinstance(configs, list) else [configs]:
                    forbidden = {"access_key", "secret_key", "credentials", "client_secret", "client_certificate",
                                 "client_key", "password", "username", "config_path"}
                    assert not forbidden & set(config), f"{env}: provider {kind} sets {forbidden & set(config)}"
