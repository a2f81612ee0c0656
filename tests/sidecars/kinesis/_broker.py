"""A test's own Kinesis stream, lease table and dead-letter queue on the AWS emulator (moto):
publisher (partition key = the order's account) and inspector (what is past the checkpoints,
the dead letters, the leases). boto3 is synchronous: every call runs on a thread."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

from wojak.sidecars.kinesis import KinesisSidecarSettings
from wojak.sidecars.kinesis.source import DETAIL_ATTRIBUTE, ENCODING_ATTRIBUTE, REASON_ATTRIBUTE, SHARD_END, Lease, LeaseTable
from wojak.sidecars.testing.contract import ACCOUNTS
from wojak.sidecars.testing.memory import DeadLetter


def account_key(body: bytes) -> str:
    """The producer contract: partition key = the order's account (a tick's: its symbol; else a fixed key)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "no-account"
    for field in ("account", "symbol"):
        value = data.get(field) if isinstance(data, dict) else None
        if isinstance(value, str) and value:
            return value
    return "no-account"


class KinesisStream:
    def __init__(self, aws: Any, *, shards: int = 4, endpoint: str | None = None) -> None:
        self.aws = aws
        self.endpoint = endpoint or aws.endpoint_url
        self.kinesis = self._client("kinesis")
        self.dynamodb = self._client("dynamodb")
        self.sqs = self._client("sqs")
        prefix = f"wojak-test-{uuid.uuid4().hex[:12]}"
        self.stream = f"{prefix}-orders"
        self.table = f"{prefix}-leases"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=shards)
        self.wait_active()
        self.dlq_url = self.sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
        self.ids: dict[str, tuple[str, str, str]] = {}  # the publisher's message_id -> coordinates (first publication)

    def _client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.aws.region,
                            aws_access_key_id=self.aws.access_key_id, aws_secret_access_key=self.aws.secret_access_key,
                            config=Config(retries={"mode": "standard", "max_attempts": 3}))

    def wait_active(self) -> None:
        while self.kinesis.describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            time.sleep(0.05)

    def settings(self, **kw: Any) -> KinesisSidecarSettings:
        values: dict[str, Any] = {"WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS, **self.env()}
        values.update(kw)
        return KinesisSidecarSettings(**{k.removeprefix("WOJAK_SIDECAR_KINESIS_").lower() if k.startswith("WOJAK_SIDECAR_KINESIS_") else k: v
                                         for k, v in values.items() if not k.startswith("AWS_")})

    def env(self) -> dict[str, str]:
        return {"WOJAK_SIDECAR_KINESIS_STREAM": self.stream, "WOJAK_SIDECAR_KINESIS_LEASE_TABLE": self.table,
                "WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL": self.dlq_url,
                "WOJAK_SIDECAR_KINESIS_ENDPOINT": self.endpoint, "WOJAK_SIDECAR_KINESIS_REGION": self.aws.region,
                "WOJAK_SIDECAR_KINESIS_LEASE_SECONDS": "3", "WOJAK_SIDECAR_KINESIS_POLL_INTERVAL": "0.2",
                "WOJAK_SIDECAR_KINESIS_MIN_POLL_INTERVAL": "0.05", "WOJAK_SIDECAR_KINESIS_SHARD_SYNC_INTERVAL": "1",
                "AWS_ACCESS_KEY_ID": self.aws.access_key_id, "AWS_SECRET_ACCESS_KEY": self.aws.secret_access_key}

    def close(self) -> None:
        for call in (lambda: self.kinesis.delete_stream(StreamName=self.stream, EnforceConsumerDeletion=True),
                     lambda: self.dynamodb.delete_table(TableName=self.table),
                     lambda: self.sqs.delete_queue(QueueUrl=self.dlq_url)):
            try:
                call()
            except Exception:
                pass

    # -- publishing ------------------------------------------------------------------

    async def publish(self, body: bytes, message_id: str | None = None, key: str | None = None) -> tuple[str, str, str]:
        response = await asyncio.to_thread(self.kinesis.put_record, StreamName=self.stream, Data=body,
                                           PartitionKey=key or account_key(body))
        coordinates = (self.stream, response["ShardId"], response["SequenceNumber"])
        if message_id:
            self.ids.setdefault(message_id, coordinates)
        return coordinates

    async def publish_many(self, bodies: list[tuple[bytes, str | None]], keys: list[str] | None = None) -> list[tuple[str, str, str]]:
        """In order (one account's orders keep their order in its shard), 500 a call."""
        out: list[tuple[str, str, str]] = []
        for start in range(0, len(bodies), 500):
            chunk = bodies[start:start + 500]
            records = [{"Data": b, "PartitionKey": keys[start + i] if keys else account_key(b)} for i, (b, _) in enumerate(chunk)]
            response = await asyncio.to_thread(self.kinesis.put_records, StreamName=self.stream, Records=records)
            assert not response.get("FailedRecordCount"), response
            for (_, mid), r in zip(chunk, response["Records"]):
                coordinates = (self.stream, r["ShardId"], r["SequenceNumber"])
                out.append(coordinates)
                if mid:
                    self.ids.setdefault(mid, coordinates)
        return out

    # -- inspecting ------------------------------------------------------------------

    def shards(self) -> list[dict[str, Any]]:
        return self.kinesis.list_shards(StreamName=self.stream)["Shards"]

    def leases(self) -> dict[str, Lease]:
        try:
            return {lease.key: lease for lease in LeaseTable(self.dynamodb, self.table, "inspector").scan()}
        except self.dynamodb.exceptions.ResourceNotFoundException:
            return {}

    def _after(self, shard_id: str, checkpoint: str | None) -> list[dict[str, Any]]:
        """Records of the shard after ``checkpoint`` (None / TRIM_HORIZON: all; SHARD_END: none)."""
        if checkpoint == SHARD_END:
            return []
        kwargs: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        if checkpoint and checkpoint.isdigit():
            kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
        iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **kwargs)["ShardIterator"]
        out: list[dict[str, Any]] = []
        while iterator:
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=10000)
            if not response["Records"]:
                return out
            out.extend(response["Records"])
            iterator = response.get("NextShardIterator")
        return out

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Every record of every shard, in sequence order."""
        return {s["ShardId"]: self._after(s["ShardId"], None) for s in self.shards()}

    def pending_now(self) -> int:
        leases = self.leases()
        return sum(len(self._after(s["ShardId"], leases[s["ShardId"]].checkpoint if s["ShardId"] in leases else None))
                   for s in self.shards())

    async def pending(self) -> int:
        """Records past the checkpoints (what a consumer starting now would read)."""
        return await asyncio.to_thread(self.pending_now)

    def take(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                                MessageAttributeNames=["All"]).get("Messages") or []
            if not messages:
                return out
            out.extend(messages)
            self.sqs.delete_message_batch(QueueUrl=self.dlq_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                                          for i, m in enumerate(messages)])

    async def dead_letter_count(self) -> int:
        """Messages in the dead-letter queue, received or not (its attributes: nothing received)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        attributes = (await asyncio.to_thread(self.sqs.get_queue_attributes, QueueUrl=self.dlq_url,
                                              AttributeNames=names))["Attributes"]
        return sum(int(attributes.get(n, 0)) for n in names)

    async def dead_letter_messages(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.take)

    async def dead_letters(self) -> list[DeadLetter]:
        letters = []
        for m in await self.dead_letter_messages():
            attributes = m.get("MessageAttributes") or {}
            reason = attributes.get(REASON_ATTRIBUTE, {}).get("StringValue")
            detail = attributes.get(DETAIL_ATTRIBUTE, {}).get("StringValue")
            encoding = attributes.get(ENCODING_ATTRIBUTE, {}).get("StringValue")
            body = base64.b64decode(m["Body"]) if encoding == "base64" else m["Body"].encode()
            letters.append(DeadLetter(reason, json.loads(detail) if detail else None, body))
        return letters
