"""Kinesis ingest on the AWS emulator: a bare boto3 GetRecords loop vs the wojak Kinesis sidecar +
engine + lease-table checkpoints, in the same run against the same emulator.

    python bench/kinesis.py                         # 10,000 orders, 4 shards, 100 accounts, SQLite full
    python bench/kinesis.py --orders 5000 --synchronous normal
    python bench/run.py --only kinesis              # the same section from the main harness

Needs moto_server on loopback (``scripts/services up aws``; the endpoint comes from
WOJAK_TEST_AWS_ENDPOINT, else http://127.0.0.1:5000). Every run gets its own stream (``--shards``),
preloaded with the same N JSON orders (unique client_order_id, ``--accounts`` accounts, partition
key = account as the producer contract says) before anything reads, its own lease table and DLQ.

* baseline: a separate process with one boto3 client that reads every shard from TRIM_HORIZON
  with GetRecords (Limit 10,000), shard after shard, round after round, until it has N records;
  it times its own first record -> the last one. No checkpoints, no processing.
* wojak: a real ``wojak engine`` (SQLite store, in-process sandbox, ticked first) and a real
  ``wojak sidecar kinesis`` (its defaults: GetRecords of 1,000, 0.2 s between calls per busy shard,
  prefetch 1,000; checkpoints every 0.5 s). Start = the sidecar's first ack (its /metrics); end =
  every shard's checkpoint in the lease table is its last record's sequence number (polled every
  50 ms): every order decided, acted on and checkpointed. Then SIGTERM (exit 0); the DLQ must be
  empty.

The emulator is a Python process on the same two cores: its CPU per record is reported too.
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

from bench._common import free_port, process, progress, py_spy, workdir  # noqa: E402
from bench._sidecar import check, counter, cpu_text, engine_ready, first_ack, metrics_text, per_order_us, verdicts  # noqa: E402
from bench.rabbitmq import cpu_seconds  # noqa: E402

PY = sys.executable
ENDPOINT = os.environ.get("WOJAK_TEST_AWS_ENDPOINT") or "http://127.0.0.1:5000"
REGION = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
               "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing"}


def client(service: str):
    import boto3

    return boto3.client(service, endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def bodies(n: int, prefix: str, accounts: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        account = f"acct-{i % accounts}"
        order = {"client_order_id": f"{prefix}-{i}", "account": account, "symbol": "NIFTY-FUT",
                 "side": "buy" if i % 2 else "sell", "quantity": "1", "order_type": "limit",
                 "limit_price": "24000", "time_in_force": "day"}
        out.append((json.dumps(order, separators=(",", ":")).encode(), account))
    return out


class Stream:
    """The run's own stream, lease table and DLQ on the emulator."""

    def __init__(self, shards: int) -> None:
        prefix = f"wojak-bench-{uuid.uuid4().hex[:10]}"
        self.kinesis, self.dynamodb, self.sqs = client("kinesis"), client("dynamodb"), client("sqs")
        self.name, self.table = f"{prefix}-orders", f"{prefix}-leases"
        self.kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        while self.kinesis.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            time.sleep(0.05)
        self.dlq = self.sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]

    def preload(self, messages: list[tuple[bytes, str]]) -> float:
        started = time.perf_counter()
        for k in range(0, len(messages), 500):
            r = self.kinesis.put_records(StreamName=self.name, Records=[{"Data": d, "PartitionKey": key} for d, key in messages[k:k + 500]])
            assert not r.get("FailedRecordCount"), r
        return time.perf_counter() - started

    def ends(self) -> dict[str, str]:
        """shard -> its last record's sequence number (shards with records)."""
        out = {}
        for s in self.kinesis.list_shards(StreamName=self.name)["Shards"]:
            it = self.kinesis.get_shard_iterator(StreamName=self.name, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            last = None
            while True:
                r = self.kinesis.get_records(ShardIterator=it, Limit=10000)
                if not r["Records"]:
                    break
                last, it = r["Records"][-1]["SequenceNumber"], r["NextShardIterator"]
            if last is not None:
                out[s["ShardId"]] = last
        return out

    def checkpoints(self) -> dict[str, str]:
        try:
            items = self.dynamodb.scan(TableName=self.table, ConsistentRead=True)["Items"]
        except self.dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {i["leaseKey"]["S"]: i.get("checkpoint", {}).get("S", "") for i in items}

    def dead_letters(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def close(self) -> None:
        for call in (lambda: self.kinesis.delete_stream(StreamName=self.name), lambda: self.dynamodb.delete_table(TableName=self.table),
                     lambda: self.sqs.delete_queue(QueueUrl=self.dlq)):
            try:
                call()
            except Exception:
                pass


def emulator_pid() -> int | None:
    port = ENDPOINT.rstrip("/").rpartition(":")[2]
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


# -- the baseline: a bare GetRecords loop, in its own process --------------------------------


def bare_main(argv: list[str]) -> None:
    stream, total = argv[0], int(argv[1])
    kinesis = client("kinesis")
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    iterators = {s: kinesis.get_shard_iterator(StreamName=stream, ShardId=s, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                 for s in shards}
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0, "calls": 0}
    while state["n"] < total:
        for shard in shards:
            r = kinesis.get_records(ShardIterator=iterators[shard], Limit=10000)
            state["calls"] += 1
            iterators[shard] = r["NextShardIterator"]
            if r["Records"] and state["n"] == 0:
                state["first"], state["cpu0"] = time.time(), time.process_time()
            state["n"] += len(r["Records"])
    state["last"], state["cpu1"] = time.time(), time.process_time()
    print(json.dumps(state), flush=True)


def run_bare(n: int, shards: int, accounts: int) -> dict:
    stream = Stream(shards)
    try:
        preload = stream.preload(bodies(n, "bare", accounts))
        cpu0 = cpu_seconds(emulator_pid())
        proc = subprocess.run([PY, __file__, "--bare-consumer", stream.name, str(n)], capture_output=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"bare consumer exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        r = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        emulator_us = (cpu_seconds(emulator_pid()) - cpu0) / n * 1e6
    finally:
        stream.close()
    secs = r["last"] - r["first"]
    return {"orders": n, "seconds": secs, "per_s": n / secs, "calls": r["calls"], "preload_s": preload,
            "cpu_us_per_order": {"consumer": (r["cpu1"] - r["cpu0"]) / n * 1e6, "emulator": emulator_us}}


# -- the subject: wojak sidecar + engine -----------------------------------------------------


async def run_wojak(n: int, shards: int, accounts: int, synchronous: str, profile: Path | None) -> dict:
    stream = Stream(shards)
    try:
        with workdir() as tmp:
            sock = tmp / "run" / "engine.sock"
            engine_env = {"WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_LOG_LEVEL": "WARNING",
                          "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}", "WOJAK_VENUE": "sandbox"}
            port = free_port()
            sidecar_env = {**CREDENTIALS, "WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_LOG_LEVEL": "WARNING",
                           "WOJAK_SIDECAR_KINESIS_STREAM": stream.name, "WOJAK_SIDECAR_KINESIS_LEASE_TABLE": stream.table,
                           "WOJAK_SIDECAR_KINESIS_DEAD_LETTER_QUEUE_URL": stream.dlq, "WOJAK_SIDECAR_KINESIS_ENDPOINT": ENDPOINT,
                           "WOJAK_SIDECAR_KINESIS_REGION": REGION, "WOJAK_SIDECAR_HEALTH_PORT": str(port)}
            preload = await asyncio.to_thread(stream.preload, bodies(n, f"w{uuid.uuid4().hex[:6]}", accounts))
            ends = await asyncio.to_thread(stream.ends)
            command = [PY, "-m", "wojak", "sidecar", "kinesis"]
            if profile is not None:  # py-spy's view of the sidecar, when asked for and installed
                command = [py_spy(), "record", "-o", str(profile), "-f", "speedscope", "--nonblocking", "--", *command]
            with process([PY, "-m", "wojak", "engine"], engine_env, tmp / "engine.log") as engine:
                await engine_ready(sock)
                with process(command, sidecar_env, tmp / "sidecar.log") as sidecar:
                    spawned = await first_ack(sidecar, port, tmp)
                    t0 = time.perf_counter()
                    emulator = emulator_pid()
                    pid = _child_pid(sidecar.pid) if profile is not None else sidecar.pid
                    cpu0 = {"sidecar": cpu_seconds(pid), "engine": cpu_seconds(engine.pid), "emulator": cpu_seconds(emulator)}
                    while True:
                        checkpoints = await asyncio.to_thread(stream.checkpoints)
                        if all(checkpoints.get(s) == seq for s, seq in ends.items()):
                            break
                        check(sidecar, tmp, t0, "checkpointed to the end", 600)
                        await asyncio.sleep(0.05)
                    t1 = time.perf_counter()
                    cpu = {"sidecar": cpu_seconds(pid), "engine": cpu_seconds(engine.pid), "emulator": cpu_seconds(emulator)}
                    text = await asyncio.to_thread(metrics_text, port)
                    sidecar.send_signal(signal.SIGINT if profile is not None else signal.SIGTERM)
                    code = await asyncio.to_thread(sidecar.wait, 60)
            dead = await asyncio.to_thread(stream.dead_letters)
    finally:
        stream.close()
    secs = t1 - t0
    return {"synchronous": synchronous, "accounts": accounts, "shards": shards, "orders": n, "seconds": secs, "per_s": n / secs,
            "from_spawn_s": t1 - spawned, "dead_lettered": dead, "sidecar_exit": code, "verdicts": verdicts(text, "kinesis"), "preload_s": preload,
            "checkpoints": counter(text, "wojak_sidecar_kinesis_leases", kind="checkpoints"),
            "cpu_us_per_order": per_order_us(cpu0, cpu, n)}


def _child_pid(pid: int) -> int:
    """The sidecar under py-spy: py-spy's child."""
    for _ in range(100):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    return pid


# -- the section ---------------------------------------------------------------------------


def bench(args, results: dict) -> None:
    n = getattr(args, "kinesis_orders", None) or 10000
    synchronous = getattr(args, "synchronous", None) or ["full"]
    shards = getattr(args, "shards", None) or 4
    accounts = getattr(args, "accounts", None) or 100
    profile = getattr(args, "profile", None)
    out: dict = {"bare": [], "wojak": []}
    progress(f"bare boto3 GetRecords loop, {shards} shards, {n:,} records")
    out["bare"].append(run_bare(n, shards, accounts))
    for sync in synchronous:
        progress(f"wojak sidecar kinesis + engine (SQLite synchronous={sync}), {accounts} accounts, {n:,} orders")
        out["wojak"].append(asyncio.run(run_wojak(n, shards, accounts, sync, Path(profile) if profile else None)))
    results["kinesis"] = out
    report(out)


def report(out: dict) -> None:
    bare = out["bare"][0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n  Kinesis ingest on moto ({os.cpu_count()} cores, load average {load} at the end; N preloaded records; CPU "
          "us/order from /proc, the emulator's is its whole process)")
    print(f"    bare boto3 GetRecords loop    {bare['per_s']:9,.0f} msg/s   ({bare['orders']:,} in {bare['seconds']:.2f} s; "
          f"{bare['calls']} calls; CPU us/msg {cpu_text(bare)})")
    for w in out["wojak"]:
        ok = w["dead_lettered"] == 0 and w["sidecar_exit"] == 0
        print(f"    wojak sync={w['synchronous']:<6}             {w['per_s']:9,.0f} orders/s  = {w['per_s'] / bare['per_s']:4.0%} of bare"
              f"   ({w['orders']:,} in {w['seconds']:.2f} s, {w['from_spawn_s']:.2f} s from spawn; {w['accounts']} accounts over "
              f"{w['shards']} shards; {w['checkpoints']:.0f} checkpoints; CPU us/order {cpu_text(w)}; verdicts {w['verdicts']}; "
              f"DLQ {w['dead_lettered']}, exit {w['sidecar_exit']}{'' if ok else '  <-- NOT CLEAN'})")


def maybe_run(sections, args, results: dict) -> None:
    """bench/run.py's hook: runs the section when ``--only kinesis`` was given."""
    if "kinesis" in sections:
        bench(args, results)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-consumer":
        bare_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", dest="kinesis_orders", type=int, default=10000, help="records preloaded per run")
    parser.add_argument("--shards", type=int, default=4, help="shards of each run's stream")
    parser.add_argument("--accounts", type=int, default=100, help="accounts the orders are spread over (the partition keys)")
    parser.add_argument("--synchronous", action="append", help="SQLite synchronous mode(s) (default: full)")
    parser.add_argument("--profile", help="record the sidecar with py-spy (speedscope JSON) to this file")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict = {}
    bench(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
