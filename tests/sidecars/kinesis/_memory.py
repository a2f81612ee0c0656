"""A Kinesis stream in memory with real Kinesis's resharding (moto 5.2's keeps writing into a
closed parent): a closed shard keeps its records, new records go to the open shard whose hash
range holds the key, and GetRecords on a closed shard read to its end answers no next iterator
(SHARD_END) and the child shards. The boto3 calls the sidecar makes, nothing more; DynamoDB and
SQS stay the emulator's."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any


class _Shard:
    def __init__(self, shard_id: str, start: int, end: int, parent: str | None = None) -> None:
        self.shard_id, self.start, self.end, self.parent = shard_id, start, end, parent
        self.records: list[dict[str, Any]] = []
        self.closed = False
        self.children: list[str] = []

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ShardId": self.shard_id, "HashKeyRange": {"StartingHashKey": str(self.start), "EndingHashKey": str(self.end)},
                             "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
        if self.parent:
            d["ParentShardId"] = self.parent
        if self.closed:
            d["SequenceNumberRange"]["EndingSequenceNumber"] = self.records[-1]["SequenceNumber"] if self.records else "0"
        return d


class MemoryKinesis:
    """One stream's shards; ``client()`` answers the sidecar's Kinesis calls."""

    def __init__(self, stream: str, shards: int = 1) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.sequence = 0
        step = 2**128 // shards
        self.shards = {f"shardId-{i:012d}": _Shard(f"shardId-{i:012d}", i * step, (i + 1) * step - 1 if i < shards - 1 else 2**128 - 1)
                       for i in range(shards)}

    def put(self, data: bytes, partition_key: str) -> tuple[str, str]:
        key = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
        with self.lock:
            shard = next(s for s in self.shards.values() if not s.closed and s.start <= key <= s.end)
            self.sequence += 1
            seq = f"{self.sequence:021d}"
            shard.records.append({"SequenceNumber": seq, "Data": data, "PartitionKey": partition_key})
            return shard.shard_id, seq

    def split(self, shard_id: str) -> list[str]:
        with self.lock:
            parent = self.shards[shard_id]
            middle = (parent.start + parent.end) // 2
            n = len(self.shards)
            for i, (start, end) in enumerate(((parent.start, middle), (middle + 1, parent.end))):
                child = _Shard(f"shardId-{n + i:012d}", start, end, parent=shard_id)
                self.shards[child.shard_id] = child
                parent.children.append(child.shard_id)
            parent.closed = True
            return list(parent.children)

    def client(self) -> "_Client":
        return _Client(self)


class _Client:
    def __init__(self, memory: MemoryKinesis) -> None:
        self.memory = memory

    def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
        return {"StreamDescriptionSummary": {"StreamName": StreamName, "StreamStatus": "ACTIVE"}}

    def list_shards(self, StreamName: str | None = None, NextToken: str | None = None) -> dict[str, Any]:
        with self.memory.lock:
            return {"Shards": [s.describe() for s in self.memory.shards.values()]}

    def get_shard_iterator(self, StreamName: str, ShardId: str, ShardIteratorType: str, StartingSequenceNumber: str | None = None) -> dict[str, Any]:
        shard = self.memory.shards[ShardId]
        if ShardIteratorType == "TRIM_HORIZON":
            position = 0
        elif ShardIteratorType == "LATEST":
            position = len(shard.records)
        else:
            assert ShardIteratorType == "AFTER_SEQUENCE_NUMBER"
            position = sum(1 for r in shard.records if int(r["SequenceNumber"]) <= int(StartingSequenceNumber or 0))
        return {"ShardIterator": json.dumps([ShardId, position])}

    def get_records(self, ShardIterator: str, Limit: int = 10000) -> dict[str, Any]:
        shard_id, position = json.loads(ShardIterator)
        shard = self.memory.shards[shard_id]
        with self.memory.lock:
            records = shard.records[position:position + Limit]
            after = position + len(records)
            if shard.closed and after >= len(shard.records):  # SHARD_END: no next iterator, the children named
                return {"Records": records, "MillisBehindLatest": 0,
                        "ChildShards": [{"ShardId": c, "ParentShards": [shard_id]} for c in shard.children]}
            return {"Records": records, "NextShardIterator": json.dumps([shard_id, after]), "MillisBehindLatest": 0}

    def put_record(self, StreamName: str, Data: bytes, PartitionKey: str) -> dict[str, Any]:
        shard_id, seq = self.memory.put(Data, PartitionKey)
        return {"ShardId": shard_id, "SequenceNumber": seq}
