"""Kafka ingest: a bare aiokafka consume+commit loop vs the wojak Kafka sidecar + engine + commits.

    python bench/kafka.py                              # 20,000 orders, 8 partitions, 100 accounts, SQLite full + normal
    python bench/kafka.py --accounts 8 --synchronous normal
    python bench/kafka.py --prefetch 256 --prefetch 1024
    python bench/run.py --only kafka                   # the same section from the main harness

Needs a Kafka on loopback: ``scripts/services up kafka`` (the bootstrap comes from
WOJAK_TEST_KAFKA_BOOTSTRAP, else 127.0.0.1:9092).

Every run gets its own topic (``--partitions``, default 8), preloaded with the same N JSON
orders (unique client_order_id, ``--accounts`` accounts, key = account as the producer contract
says, alternating buy/sell, NIFTY-FUT limit 24000), produced with acks=all before anything
consumes, and its own consumer group.

* baseline: a separate process (uvloop) with an AIOKafkaConsumer in a group of its own,
  ``enable_auto_commit=False``, that loops ``getmany`` and commits each batch's offsets; it times
  its own first record -> the commit of the last one.
* wojak: a real ``wojak engine`` (SQLite store, in-process sandbox, ticked first over its socket)
  and a real ``wojak sidecar kafka`` (its defaults, except prefetch). Start = the sidecar's first
  ack (its /metrics, polled every 20 ms); end = the group's committed offsets (polled every
  20 ms) reach the end of every partition: every order decided, acted on and committed. The
  sidecar is then stopped with SIGTERM (exit 0), and the dead-letter topic must be empty.

The figure is orders/s over that window; the ratio is wojak / bare. The orders of one account
are kept in sequence (one in flight per account per partition), so ``--accounts`` bounds how
many are in flight: the default 100 is the same order mix as the RabbitMQ section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import free_port, process, progress, workdir  # noqa: E402
from bench._sidecar import check, counter, cpu_text, engine_ready, first_ack, metrics_text, per_order_us, verdicts  # noqa: E402
from bench.rabbitmq import cpu_seconds  # noqa: E402

PY = sys.executable
BOOTSTRAP = os.environ.get("WOJAK_TEST_KAFKA_BOOTSTRAP") or "127.0.0.1:9092"


def bodies(n: int, prefix: str, accounts: int) -> list[tuple[bytes, bytes]]:
    """(JSON body, key = account): the orders of bench/rabbitmq.bodies, keyed as the producer contract says."""
    out = []
    for i in range(n):
        account = f"acct-{i % accounts}"
        order = {"client_order_id": f"{prefix}-{i}", "account": account, "symbol": "NIFTY-FUT",
                 "side": "buy" if i % 2 else "sell", "quantity": "1", "order_type": "limit",
                 "limit_price": "24000", "time_in_force": "day"}  # fmt: skip
        out.append((json.dumps(order, separators=(",", ":")).encode(), account.encode()))
    return out


class Topic:
    """The bench's own topic (+ its dead-letter and results topics): create, preload, offsets, delete."""

    def __init__(self, prefix: str, partitions: int) -> None:
        self.prefix = prefix
        self.partitions = partitions
        self.topic, self.dlt, self.results = f"{prefix}.orders", f"{prefix}.dlt", f"{prefix}.results"

    async def __aenter__(self) -> "Topic":
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        self.admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await self.admin.start()
        await self.admin.create_topics([NewTopic(self.topic, self.partitions, 1), NewTopic(self.dlt, 1, 1),
                                        NewTopic(self.results, 1, 1)])  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.admin.delete_topics([self.topic, self.dlt, self.results])
        finally:
            await self.admin.close()

    async def preload(self, messages: list[tuple[bytes, bytes]], chunk: int = 2000) -> float:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, linger_ms=5)
        await producer.start()
        started = time.perf_counter()
        try:
            for k in range(0, len(messages), chunk):
                futures = [await producer.send(self.topic, value=v, key=key) for v, key in messages[k : k + chunk]]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return time.perf_counter() - started

    async def ends(self, topic: str | None = None, partitions: int | None = None) -> dict[int, int]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = topic or self.topic
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions or self.partitions)]
            return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    async def committed(self, group: str) -> dict[int, int]:
        offsets = await self.admin.list_consumer_group_offsets(group)
        got = {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == self.topic}
        return {p: got.get(p, -1) for p in range(self.partitions)}


# -- the baseline: a bare consume+commit loop, in its own process --------------------------


async def _bare(topic: str, group: str, total: int, max_records: int) -> dict:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0, "commits": 0}
    try:
        while state["n"] < total:
            batch = await consumer.getmany(timeout_ms=100, max_records=max_records)
            if not batch:
                continue
            if state["n"] == 0:
                state["first"], state["cpu0"] = time.time(), time.process_time()
            for records in batch.values():
                state["n"] += len(records)
            await consumer.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in batch.items()})
            state["commits"] += 1
        state["last"], state["cpu1"] = time.time(), time.process_time()
    finally:
        await consumer.stop()
    return state


def bare_main(argv: list[str]) -> None:
    import uvloop

    topic, group, total, max_records = argv[0], argv[1], int(argv[2]), int(argv[3])
    print(json.dumps(uvloop.run(_bare(topic, group, total, max_records))), flush=True)


async def run_bare(n: int, partitions: int, accounts: int, max_records: int) -> dict:
    async with Topic(f"wojak-bench.{uuid.uuid4().hex[:10]}", partitions) as topic:
        preload = await topic.preload(bodies(n, "bare", accounts))
        cpu0 = broker_cpu()
        group = f"{topic.prefix}.bare"
        proc = subprocess.Popen([PY, __file__, "--bare-consumer", topic.topic, group, str(n), str(max_records)],
                                stdout=subprocess.PIPE)  # fmt: skip
        out, _ = await asyncio.to_thread(proc.communicate, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"bare consumer exited {proc.returncode}")
        r = json.loads(out.decode().strip().splitlines()[-1])
        broker_us = (broker_cpu() - cpu0) / n * 1e6
        lag = sum((await topic.ends()).values()) - sum(max(o, 0) for o in (await topic.committed(group)).values())
    secs = r["last"] - r["first"]
    return {"max_records": max_records, "orders": n, "seconds": secs, "per_s": n / secs, "lag": lag, "preload_s": preload,
            "commits": r["commits"], "cpu_us_per_order": {"consumer": (r["cpu1"] - r["cpu0"]) / n * 1e6, "broker": broker_us}}  # fmt: skip


# -- a framework baseline: a FastStream Kafka subscriber doing nothing, in its own process --


async def _faststream(topic: str, group: str, total: int, policy: str) -> dict:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(BOOTSTRAP, logger=None)
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0}
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy(policy))
    async def nothing(body: dict) -> None:  # the framework's work only: receive, decode the JSON, ack
        if state["n"] == 0:
            state["first"], state["cpu0"] = time.time(), time.process_time()
        state["n"] += 1
        if state["n"] >= total:
            state["last"], state["cpu1"] = time.time(), time.process_time()
            done.set()

    await broker.start()
    try:
        await done.wait()
    finally:
        await broker.stop()
    return state


def faststream_main(argv: list[str]) -> None:
    import uvloop

    topic, group, total, policy = argv[0], argv[1], int(argv[2]), argv[3]
    print(json.dumps(uvloop.run(_faststream(topic, group, total, policy))), flush=True)


async def run_faststream(n: int, partitions: int, accounts: int, policy: str) -> dict:
    async with Topic(f"wojak-bench.{uuid.uuid4().hex[:10]}", partitions) as topic:
        await topic.preload(bodies(n, "fs", accounts))
        group = f"{topic.prefix}.faststream"
        proc = subprocess.Popen([PY, __file__, "--faststream-consumer", topic.topic, group, str(n), policy],
                                stdout=subprocess.PIPE)  # fmt: skip
        out, _ = await asyncio.to_thread(proc.communicate, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"FastStream consumer exited {proc.returncode}")
        r = json.loads(out.decode().strip().splitlines()[-1])
    secs = r["last"] - r["first"]
    return {"ack_policy": policy, "orders": n, "seconds": secs, "per_s": n / secs,
            "cpu_us_per_order": {"consumer": (r["cpu1"] - r["cpu0"]) / n * 1e6}}  # fmt: skip


# -- the subject: wojak sidecar + engine ---------------------------------------------------


def broker_pid() -> int | None:
    """The Kafka JVM listening on the bootstrap port (read-only, for CPU accounting)."""
    port = BOOTSTRAP.rpartition(":")[2]
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def broker_cpu() -> float:
    return cpu_seconds(broker_pid())


async def run_wojak(n: int, partitions: int, accounts: int, prefetch: int, synchronous: str) -> dict:
    with workdir() as tmp:
        sock = tmp / "run" / "engine.sock"
        engine_env = {"WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_LOG_LEVEL": "WARNING",
                      "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}",
                      "WOJAK_VENUE": "sandbox"}  # fmt: skip
        port = free_port()
        async with Topic(f"wojak-bench.{uuid.uuid4().hex[:10]}", partitions) as topic:
            group = f"{topic.prefix}.wojak"
            sidecar_env = {"WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_LOG_LEVEL": "WARNING",
                           "WOJAK_SIDECAR_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "WOJAK_SIDECAR_KAFKA_TOPIC": topic.topic,
                           "WOJAK_SIDECAR_KAFKA_GROUP_ID": group, "WOJAK_SIDECAR_KAFKA_DEAD_LETTER_TOPIC": topic.dlt,
                           "WOJAK_SIDECAR_KAFKA_RESULTS_TOPIC": topic.results,
                           "WOJAK_SIDECAR_KAFKA_PREFETCH": str(prefetch), "WOJAK_SIDECAR_HEALTH_PORT": str(port)}  # fmt: skip
            preload = await topic.preload(bodies(n, f"w{uuid.uuid4().hex[:6]}", accounts))
            ends = await topic.ends()
            with process([PY, "-m", "wojak", "engine"], engine_env, tmp / "engine.log") as engine:
                await engine_ready(sock)
                with process([PY, "-m", "wojak", "sidecar", "kafka"], sidecar_env, tmp / "sidecar.log") as sidecar:
                    spawned = await first_ack(sidecar, port, tmp)
                    t0 = time.perf_counter()
                    cpu0 = {"sidecar": cpu_seconds(sidecar.pid), "engine": cpu_seconds(engine.pid), "broker": broker_cpu()}
                    while {p: max(o, 0) for p, o in (await topic.committed(group)).items()} != ends:  # -1: none (an empty partition)
                        check(sidecar, tmp, t0, "committed to the end", 300)
                        await asyncio.sleep(0.02)
                    t1 = time.perf_counter()
                    cpu = {"sidecar": cpu_seconds(sidecar.pid), "engine": cpu_seconds(engine.pid), "broker": broker_cpu()}
                    text = await asyncio.to_thread(metrics_text, port)
                    sidecar.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(sidecar.wait, 30)
            dead = sum((await topic.ends(topic.dlt, 1)).values())
    batches = re.search(r"^wojak_engine_batch_size_count (\S+)$", text, re.M)
    sizes = re.search(r"^wojak_engine_batch_size_sum (\S+)$", text, re.M)
    secs = t1 - t0
    return {
        "prefetch": prefetch, "accounts": accounts, "partitions": partitions, "synchronous": synchronous, "orders": n,
        "seconds": secs, "per_s": n / secs, "from_spawn_s": t1 - spawned, "dead_lettered": dead, "sidecar_exit": code,
        "verdicts": verdicts(text, "kafka"),
        "commits": counter(text, "wojak_sidecar_kafka_commits", result="ok"), "preload_s": preload,
        "cpu_us_per_order": per_order_us(cpu0, cpu, n),
        "mean_batch": float(sizes.group(1)) / float(batches.group(1)) if batches and sizes and float(batches.group(1)) else None,
    }  # fmt: skip


# -- the section ---------------------------------------------------------------------------


def bench(args, results: dict) -> None:
    """Fills results["kafka"]; ``args`` may come from bench/run.py (only ``synchronous`` is shared)."""
    n = getattr(args, "orders", None) or 20000
    synchronous = getattr(args, "synchronous", None) or ["full", "normal"]
    prefetches = getattr(args, "prefetch", None) or [256]
    partitions = getattr(args, "partitions", None) or 8
    accounts = getattr(args, "accounts", None) or 100
    out: dict = {"bare": [], "faststream": [], "wojak": []}
    progress(f"bare aiokafka consume+commit, {partitions} partitions, {n:,} records")
    out["bare"].append(asyncio.run(run_bare(n, partitions, accounts, max(prefetches))))
    for policy in ("ack_first", "ack"):  # its default (auto-commit on receipt), and a commit after each handler
        progress(f"FastStream Kafka subscriber doing nothing (ack_policy={policy}), {n:,} records")
        out["faststream"].append(asyncio.run(run_faststream(n, partitions, accounts, policy)))
    for prefetch in prefetches:
        for sync in synchronous:
            progress(f"wojak sidecar kafka + engine (SQLite synchronous={sync}), prefetch {prefetch}, {accounts} accounts, "
                     f"{n:,} orders")  # fmt: skip
            out["wojak"].append(asyncio.run(run_wojak(n, partitions, accounts, prefetch, sync)))
    results["kafka"] = out
    report(out)


def report(out: dict) -> None:
    bare = out["bare"][0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n  Kafka ingest ({os.cpu_count()} cores, load average {load} at the end; N preloaded records, consumed, "
          "decided and committed; CPU us/order from /proc: the broker's is its whole JVM)")  # fmt: skip
    print(f"    bare aiokafka consume+commit  {bare['per_s']:9,.0f} msg/s   ({bare['orders']:,} in {bare['seconds']:.2f} s; "
          f"{bare['commits']} commits; lag left {bare['lag']}; CPU us/msg {cpu_text(bare)})")  # fmt: skip
    for f in out.get("faststream", []):
        print(f"    FastStream subscriber, no-op    {f['per_s']:9,.0f} msg/s   ({f['orders']:,} in {f['seconds']:.2f} s; "
              f"ack_policy={f['ack_policy']}; CPU us/msg {cpu_text(f)})")  # fmt: skip
    for w in out["wojak"]:
        share = w["per_s"] / bare["per_s"]
        vs_fs = ", ".join(f"{w['per_s'] / f['per_s']:.0%} of FastStream {f['ack_policy']}" for f in out.get("faststream", []))
        ok = w["dead_lettered"] == 0 and w["sidecar_exit"] == 0
        print(f"    wojak sync={w['synchronous']:<6} prefetch {w['prefetch']:>5}  {w['per_s']:9,.0f} orders/s  = {share:4.0%} of bare, {vs_fs}"
              f"   ({w['orders']:,} in {w['seconds']:.2f} s, {w['from_spawn_s']:.2f} s from spawn; {w['accounts']} accounts over "
              f"{w['partitions']} partitions; {w['commits']:.0f} commits; CPU us/order {cpu_text(w)}; mean engine batch "
              f"{w['mean_batch'] or 0:.1f}; verdicts {w['verdicts']}; DLT {w['dead_lettered']}, exit {w['sidecar_exit']}"
              f"{'' if ok else '  <-- NOT CLEAN'})")  # fmt: skip


def maybe_run(sections, args, results: dict) -> None:
    """bench/run.py's hook: runs the section when ``--only kafka`` was given."""
    if "kafka" in sections:
        bench(args, results)


def main() -> None:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # a new topic's first produce meets "not leader yet"
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-consumer":
        bare_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--faststream-consumer":
        faststream_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20000, help="records preloaded per run")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of each run's topic")
    parser.add_argument("--accounts", type=int, default=100, help="accounts the orders are spread over (the lanes)")
    parser.add_argument("--prefetch", type=int, action="append", help="WOJAK_SIDECAR_KAFKA_PREFETCH (repeatable; default 256)")
    parser.add_argument("--synchronous", action="append", help="SQLite synchronous mode(s) (default: full, normal)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict = {}
    bench(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
