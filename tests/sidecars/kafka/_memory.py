"""An in-memory Kafka for the Kafka source: the calls ``KafkaSource`` makes of aiokafka's consumer
and producer (subscribe with a rebalance listener, getmany, pause/resume, commit; send_and_wait),
over topics of partitions held in this process.

It runs ``KafkaSource``'s own logic (lanes, in-place retries, the commit of the settled prefix,
revoke/assign) without a broker: the contract suite runs against it as well as against a real
Kafka. A consumer group assigns partitions round-robin; a member joining or leaving revokes
every member's partitions (each listener is awaited) before assigning, as Kafka's eager protocol
does. ``down`` makes the broker unreachable (produce, commit and the readiness probe fail;
fetches return nothing); ``refuse`` makes produce to a topic fail with a given error;
``fail_commits`` makes the next commits fail.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from aiokafka import errors
from aiokafka.structs import TopicPartition


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


@dataclass
class _Group:
    members: list["MemoryConsumer"] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0
    rebalancing: asyncio.Lock = field(default_factory=asyncio.Lock)


class MemoryKafka:
    def __init__(self) -> None:
        self.topics: dict[str, list[list[Record]]] = {}
        self.groups: dict[str, _Group] = {}
        self.down = False
        # topic -> a function of the record's size returning the error to raise (or None)
        self.refuse: dict[str, Callable[[int], BaseException | None]] = {}
        self.fail_commits = 0  # the next commits that fail (a rebalance under way), whoever makes them
        self._arrived = asyncio.Event()

    # -- administration ----------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.topics.setdefault(name, [[] for _ in range(partitions)])

    def append(self, topic: str, value: bytes | None, key: bytes | None = None,
               headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> Record:  # fmt: skip
        self.create_topic(topic)
        parts = self.topics[topic]
        if partition is None:
            partition = zlib.crc32(key) % len(parts) if key is not None else sum(map(len, parts)) % len(parts)
        log = parts[partition]
        record = Record(topic, partition, len(log), key, value, tuple(headers or ()))
        log.append(record)
        self._arrived.set()
        self._arrived = asyncio.Event()
        return record

    def records(self, topic: str) -> list[Record]:
        return [r for log in self.topics.get(topic, []) for r in log]

    def group(self, group_id: str) -> _Group:
        return self.groups.setdefault(group_id, _Group())

    def lag(self, group_id: str, topic: str) -> int:
        committed = self.group(group_id).committed
        return sum(len(log) - committed.get(TopicPartition(topic, p), 0) for p, log in enumerate(self.topics.get(topic, [])))

    # -- the clients KafkaSource asks for --------------------------------------------------

    def clients(self, config: Any) -> "MemoryClients":
        return MemoryClients(self, config)


class MemoryClients:
    def __init__(self, kafka: MemoryKafka, config: Any) -> None:
        self.kafka = kafka
        self.config = config

    def consumer(self) -> "MemoryConsumer":
        return MemoryConsumer(self.kafka, self.config.group_id)

    def producer(self) -> "MemoryProducer":
        return MemoryProducer(self.kafka)

    async def probe(self, producer: Any) -> None:
        if self.kafka.down:
            raise errors.KafkaConnectionError("the in-memory broker is down")

    @staticmethod
    def offset(offset: int) -> int:
        return offset


class MemoryProducer:
    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka
        self.started = False

    async def start(self) -> None:
        if self.kafka.down:
            raise errors.KafkaConnectionError("the in-memory broker is down")
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def crash(self) -> None:
        self.crashed = True

    crashed = False

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> Record:  # fmt: skip
        await asyncio.sleep(0)
        if self.kafka.down or self.crashed:
            raise errors.KafkaConnectionError("the in-memory broker is down" if self.kafka.down else "crashed")
        refuse = self.kafka.refuse.get(topic)
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v) for k, v in headers or ())
        if refuse is not None and (error := refuse(size)) is not None:
            raise error
        return self.kafka.append(topic, value, key, headers, partition)


class MemoryConsumer:
    def __init__(self, kafka: MemoryKafka, group_id: str) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.topics: list[str] = []
        self.listener: Any = None
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.paused_tps: set[TopicPartition] = set()
        self.started = False
        self.stopped = False
        self._assignment_ready = asyncio.Event()

    async def start(self) -> None:
        if self.kafka.down:
            raise errors.KafkaConnectionError("the in-memory broker is down")
        self.started = True

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics = list(topics)
        self.listener = listener
        for topic in topics:
            self.kafka.create_topic(topic)
        asyncio.get_running_loop().create_task(self._join())

    async def _join(self) -> None:
        group = self.kafka.group(self.group_id)
        group.members.append(self)
        await self._rebalance(group)

    async def _rebalance(self, group: _Group) -> None:
        async with group.rebalancing:
            for member in group.members + ([self] if self not in group.members else []):
                member._assignment_ready.clear()
            for member in list(group.members):
                if member.assigned and member.listener is not None:
                    await member.listener.on_partitions_revoked(set(member.assigned))
                member.assigned = set()
            group.generation += 1
            members = [m for m in group.members if not m.stopped]
            tps = [TopicPartition(t, p) for t in self.topics for p in range(len(self.kafka.topics[t]))]
            for i, tp in enumerate(tps):
                if members:
                    members[i % len(members)].assigned.add(tp)
            for member in members:
                member.positions = {tp: group.committed.get(tp, 0) for tp in member.assigned}
                member.paused_tps &= member.assigned
                if member.listener is not None:
                    await member.listener.on_partitions_assigned(set(member.assigned))
                member._assignment_ready.set()

    def crash(self) -> None:
        """kill -9: gone from the group at once (no revoke, no commit; the others get its
        partitions from the last commit), and nothing it calls afterwards takes effect."""
        self.crashed = True
        self.stopped = True
        group = self.kafka.group(self.group_id)
        if self in group.members:
            group.members.remove(self)
            self.assigned = set()
            if group.members:
                asyncio.get_running_loop().create_task(group.members[0]._rebalance(group))

    crashed = False

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        group = self.kafka.group(self.group_id)
        if self in group.members:
            group.members.remove(self)
            self.assigned = set()  # leaving: no revoke callback on stop (as aiokafka)
            if group.members:
                await self._rebalance(group)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *tps: TopicPartition) -> None:
        for tp in tps:
            if tp not in self.assigned:
                raise errors.IllegalStateError(f"{tp} is not assigned")
            self.paused_tps.add(tp)

    def resume(self, *tps: TopicPartition) -> None:
        for tp in tps:
            if tp not in self.assigned:
                raise errors.IllegalStateError(f"{tp} is not assigned")
            self.paused_tps.discard(tp)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        if self.stopped:
            raise errors.ConsumerStoppedError()
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
        while True:
            if not self._assignment_ready.is_set():
                try:
                    await asyncio.wait_for(self._assignment_ready.wait(), max(deadline - asyncio.get_running_loop().time(), 0.001))
                except asyncio.TimeoutError:
                    return {}
            out: dict[TopicPartition, list[Record]] = {}
            room = max_records or 1 << 30
            if not self.kafka.down:
                for tp in sorted(self.assigned):
                    if tp in self.paused_tps or room <= 0:
                        continue
                    log = self.kafka.topics[tp.topic][tp.partition]
                    position = self.positions.get(tp, 0)
                    batch = log[position : position + room]
                    if batch:
                        out[tp] = batch
                        room -= len(batch)
                        self.positions[tp] = position + len(batch)
            if out:
                return out
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return {}
            try:
                await asyncio.wait_for(self.kafka._arrived.wait(), min(left, 0.05))
            except asyncio.TimeoutError:
                pass

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(0)
        if self.kafka.down or self.crashed:
            raise errors.KafkaConnectionError("the in-memory broker is down" if self.kafka.down else "crashed")
        if self.kafka.fail_commits > 0:
            self.kafka.fail_commits -= 1
            raise errors.CommitFailedError("the group is rebalancing (injected)")
        group = self.kafka.group(self.group_id)
        for tp in offsets:
            if tp not in self.assigned:
                raise errors.CommitFailedError(f"{tp} is not assigned to this member")
        for tp, offset in offsets.items():
            group.committed[tp] = int(offset)
