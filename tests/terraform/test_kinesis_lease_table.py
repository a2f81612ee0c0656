"""The Kinesis sidecar's lease table as terraform/modules/aws-wojak-services makes it: the table
Terraform defines works for the sidecar (created from its definition on the AWS emulator), and the
pods' role grants every DynamoDB call the sidecar's lease code makes, and nothing it does not need
(the release sets createLeaseTable=false, so no dynamodb:CreateTable)."""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import pytest

from wojak.sidecars.kinesis.source import SHARD_END, LeaseLost, LeaseTable

from .conftest import MODULES_ROOT, parse_dir, resources
from .test_iam_and_secrets import _as_list, _policy_document

TABLE = "${aws_dynamodb_table.kinesis_leases.arn}"


def _table() -> dict[str, Any]:
    return dict(resources(parse_dir(MODULES_ROOT / "aws-wojak-services"), "aws_dynamodb_table"))["kinesis_leases"]


def _statements(resource: str) -> list[dict[str, Any]]:
    parsed = parse_dir(MODULES_ROOT / "aws-wojak-services")
    document = _policy_document(dict(resources(parsed, "aws_iam_role_policy"))["wojak"]["policy"])
    return [s for s in _as_list(document["Statement"]) if resource in _as_list(s["Resource"])]


def _granted_dynamodb_actions() -> set[str]:
    return {a for s in _statements(TABLE) for a in _as_list(s["Action"])}


def test_the_lease_table_is_encrypted_with_the_project_key_and_recoverable():
    table = _table()
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    [sse] = _as_list(table["server_side_encryption"])
    assert sse["enabled"] is True and sse["kms_key_arn"] == "${aws_kms_key.data.arn}"
    [pitr] = _as_list(table["point_in_time_recovery"])
    assert pitr["enabled"] is True


def test_the_release_reads_the_terraform_table_and_never_creates_one():
    stack = (MODULES_ROOT / "aws-stack" / "main.tf").read_text()
    [line] = [line for line in stack.splitlines() if line.strip().startswith("kinesis = {")]
    assert "leaseTable = module.services.kinesis_lease_table_name" in line
    assert "createLeaseTable = false" in line
    assert "dynamodb:CreateTable" not in _granted_dynamodb_actions()
    # DynamoDB uses the project key for the caller, only through DynamoDB
    [key] = [s for s in _statements("${aws_kms_key.data.arn}") if s.get("Condition")]
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": "dynamodb.${local.region}.amazonaws.com"}}


@pytest.mark.aws
def test_the_sidecar_leases_shards_in_the_table_terraform_defines_with_only_the_granted_calls(aws_service):
    """Every method of the sidecar's LeaseTable, on a table made from the Terraform definition
    (key schema, billing) on the AWS emulator; each DynamoDB operation they call is one the
    pods' role grants."""
    import boto3

    definition = _table()
    client = boto3.client("dynamodb", endpoint_url=aws_service.endpoint_url, region_name=aws_service.region,
                          aws_access_key_id=aws_service.access_key_id, aws_secret_access_key=aws_service.secret_access_key)  # fmt: skip
    name = f"wojak-test-{uuid.uuid4().hex[:12]}-kinesis-leases"
    attributes = [{"AttributeName": a["name"], "AttributeType": a["type"]} for a in _as_list(definition["attribute"])]
    client.create_table(TableName=name, KeySchema=[{"AttributeName": definition["hash_key"], "KeyType": "HASH"}],
                        AttributeDefinitions=attributes, BillingMode=definition["billing_mode"])  # fmt: skip
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    try:
        table, rival = LeaseTable(client, name, "worker-a"), LeaseTable(client, name, "worker-b")
        table.ensure(create=False)
        assert table.create("shardId-000", (), "TRIM_HORIZON") is True
        assert table.create("shardId-000", (), "TRIM_HORIZON") is False  # one lease per shard
        [lease] = table.scan()
        counter = table.take(lease)
        counter = table.renew(lease.key, counter)
        counter = table.checkpoint(lease.key, counter, "49590338271490256608559692538361571095921575989136588898")
        with pytest.raises(LeaseLost):
            rival.renew(lease.key, lease.counter)  # a stale counter: the table refuses it
        counter = table.checkpoint(lease.key, counter, SHARD_END)
        table.release(lease.key, counter)
        [done] = table.scan()
        assert done.owner is None and done.checkpoint == SHARD_END
    finally:
        client.delete_table(TableName=name)
    exercised = {n for n, f in inspect.getmembers(LeaseTable, inspect.isfunction) if not n.startswith("_")}
    assert exercised == {"ensure", "scan", "create", "take", "renew", "checkpoint", "release"}, "a new lease call: exercise it here"
    used = {f"dynamodb:{c}" for c in calls if c != "DeleteTable"}  # the test's own clean-up aside
    assert used - _granted_dynamodb_actions() == set(), f"the role does not grant {sorted(used - _granted_dynamodb_actions())}"
    assert {"dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= used
