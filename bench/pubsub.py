"""Pub/Sub ingest: a bare streaming pull + ack loop vs the wojak Pub/Sub sidecar + engine, on the
same emulator in the same run.

    python bench/pubsub.py                  # 5,000 orders, flow control 128 (both)
    python bench/pubsub.py --orders 20000 --max-messages 256
    python bench/run.py --only pubsub       # the same section from the main harness

Needs the Pub/Sub emulator: ``scripts/services up pubsub`` (PUBSUB_EMULATOR_HOST, PUBSUB_PROJECT_ID).
Each run gets its own topic, subscription (ack deadline 60 s) and dead-letter topic, preloaded
with the same N JSON orders (unique client_order_id, 100 accounts) before anything consumes.

* bare: google-cloud-pubsub's ``subscribe`` (streaming pull, the same flow control) in this
  process, its callback acks every message; first delivery -> N-th ack.
* wojak: a real ``wojak engine`` (SQLite, in-process sandbox, ticked first) and a real
  ``wojak sidecar pubsub``; first ack -> N-th ack on the sidecar's /metrics (polled every 20 ms);
  then SIGTERM, and the subscription must be empty (a unary pull finds nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import free_port, process, progress, workdir  # noqa: E402
from bench._sidecar import engine_ready, per_order_us, until_acked  # noqa: E402
from bench.rabbitmq import _profile, bodies, own_time  # noqa: E402

PY = sys.executable
PROJECT = os.environ.get("PUBSUB_PROJECT_ID", "test")
TARGET_SHARE = 0.5


class Topic:
    def __init__(self, prefix: str) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_messages=500))
        self.subscriber = pubsub_v1.SubscriberClient()
        self.name = prefix
        self.topic = self.publisher.topic_path(PROJECT, prefix)
        self.dlq = self.publisher.topic_path(PROJECT, f"{prefix}-dlq")
        self.subscription = self.subscriber.subscription_path(PROJECT, prefix)
        self.publisher.create_topic(name=self.topic)
        self.publisher.create_topic(name=self.dlq)
        self.subscriber.create_subscription(
            request={"name": self.subscription, "topic": self.topic, "ack_deadline_seconds": 60}
        )

    def preload(self, messages: list[tuple[bytes, str]]) -> float:
        started = time.perf_counter()
        futures = [self.publisher.publish(self.topic, body) for body, _ in messages]
        for f in futures:
            f.result(timeout=120)
        return time.perf_counter() - started

    def left(self) -> int:
        from google.api_core import exceptions

        try:
            r = self.subscriber.pull(request={"subscription": self.subscription, "max_messages": 100}, timeout=3)
        except exceptions.DeadlineExceeded:
            return 0
        return len(r.received_messages)

    def close(self) -> None:
        for call in (
            lambda: self.subscriber.delete_subscription(subscription=self.subscription),
            lambda: self.publisher.delete_topic(topic=self.topic),
            lambda: self.publisher.delete_topic(topic=self.dlq),
        ):
            try:
                call()
            except Exception:
                pass
        self.subscriber.close()


def run_bare(n: int, max_messages: int) -> dict:
    from google.cloud import pubsub_v1

    topic = Topic(f"wojak-bench-{uuid.uuid4().hex[:10]}")
    try:
        preload = topic.preload(bodies(n, "bare"))
        state = {"n": 0, "first": 0.0, "last": 0.0}
        lock, done = threading.Lock(), threading.Event()
        cpu0 = time.process_time()

        def on_message(message) -> None:
            message.ack()
            with lock:
                if state["n"] == 0:
                    state["first"] = time.perf_counter()
                state["n"] += 1
                if state["n"] == n:
                    state["last"] = time.perf_counter()
                    done.set()

        client = pubsub_v1.SubscriberClient()
        future = client.subscribe(
            topic.subscription, on_message, flow_control=pubsub_v1.types.FlowControl(max_messages=max_messages)
        )
        if not done.wait(600):
            raise RuntimeError(f"bare: {state['n']} of {n} after 600 s")
        cpu = time.process_time() - cpu0
        future.cancel()
        future.result(timeout=30)
        client.close()
        time.sleep(2)  # the last acks are sent in the background
        left = topic.left()
    finally:
        topic.close()
    secs = state["last"] - state["first"]
    return {"orders": n, "seconds": secs, "per_s": n / secs, "left": left, "preload_s": preload, "cpu_us": cpu / n * 1e6}


async def run_wojak(
    n: int, max_messages: int, synchronous: str, profile: Path | None = None, lease_extension: int | None = None
) -> dict:
    topic = Topic(f"wojak-bench-{uuid.uuid4().hex[:10]}")
    try:
        preload = topic.preload(bodies(n, f"w{uuid.uuid4().hex[:6]}"))
        with workdir() as tmp:
            sock = tmp / "run" / "engine.sock"
            engine_env = {
                "WOJAK_ENGINE_SOCKET": str(sock),
                "WOJAK_LOG_LEVEL": "WARNING",
                "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}",
                "WOJAK_VENUE": "sandbox",
            }
            port = free_port()
            sidecar_env = {
                "WOJAK_ENGINE_SOCKET": str(sock),
                "WOJAK_LOG_LEVEL": "WARNING",
                "WOJAK_SIDECAR_ACCOUNTS": "acct-*",
                "WOJAK_SIDECAR_PUBSUB_PROJECT": PROJECT,
                "WOJAK_SIDECAR_PUBSUB_SUBSCRIPTION": topic.name,
                "WOJAK_SIDECAR_PUBSUB_DEAD_LETTER_TOPIC": f"{topic.name}-dlq",
                "WOJAK_SIDECAR_PUBSUB_MAX_MESSAGES": str(max_messages),
                "WOJAK_SIDECAR_HEALTH_PORT": str(port),
            }
            if lease_extension:
                sidecar_env["WOJAK_SIDECAR_PUBSUB_LEASE_EXTENSION"] = str(lease_extension)
            with process([PY, "-m", "wojak", "engine"], engine_env, tmp / "engine.log") as engine:
                await engine_ready(sock)
                with process([PY, "-m", "wojak", "sidecar", "pubsub"], sidecar_env, tmp / "sidecar.log") as sidecar:
                    profilers: list = []

                    def start_profilers() -> None:
                        if profile:
                            profilers.extend(_profile(profile, engine.pid, sidecar.pid))

                    # orders settled: acks less the duplicates (a redelivery is acked again)
                    run = await until_acked(sidecar, engine, port, n, tmp, less_duplicates=True, on_first=start_profilers)
                    for p in profilers:
                        p.wait()
                    sidecar.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(sidecar.wait, 30)
        left = topic.left()
    finally:
        topic.close()
    secs = run["t1"] - run["t0"]
    return {
        "synchronous": synchronous,
        "orders": n,
        "seconds": secs,
        "per_s": n / secs,
        "left": left,
        "sidecar_exit": code,
        "duplicates": int(run["duplicates"]),
        "preload_s": preload,
        "cpu_us_per_order": per_order_us(run["cpu0"], run["cpu"], n),
    }


def bench(args, results: dict) -> None:
    n = getattr(args, "orders", None) or 5000
    max_messages = getattr(args, "max_messages", None) or 128
    synchronous = getattr(args, "synchronous", None) or ["normal"]
    progress(f"bare streaming pull + ack, flow control {max_messages}, {n:,} messages")
    out: dict = {"bare": run_bare(n, max_messages), "wojak": []}
    profile = getattr(args, "profile", None)
    for sync in synchronous:
        progress(f"wojak sidecar pubsub + engine (SQLite synchronous={sync}), flow control {max_messages}, {n:,} orders")
        where = Path(profile) / f"pubsub-{sync}" if profile else None
        lease = getattr(args, "lease_extension", None)
        out["wojak"].append(asyncio.run(run_wojak(n, max_messages, sync, where, lease)))
        if where:
            out["wojak"][-1]["profile"] = {name: own_time(where / f"{name}.raw") for name in ("sidecar", "engine")}
    results["pubsub"] = out
    report(out, max_messages)


def report(out: dict, max_messages: int) -> None:
    b = out["bare"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n  Pub/Sub ingest on the emulator ({os.cpu_count()} cores, load average {load}; flow control {max_messages})")
    print(
        f"    bare streaming pull+ack       {b['per_s']:9,.0f} msg/s    ({b['orders']:,} in {b['seconds']:.2f} s; "
        f"left {b['left']}; CPU us/msg {b['cpu_us']:.0f})"
    )
    for w in out["wojak"]:
        share = w["per_s"] / b["per_s"]
        ok = w["left"] == 0 and w["sidecar_exit"] == 0
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in w["cpu_us_per_order"].items())
        print(
            f"    wojak sync={w['synchronous']:<6}            {w['per_s']:9,.0f} orders/s = {share:4.0%} of bare "
            f"({w['orders']:,} in {w['seconds']:.2f} s; CPU us/order {cpu}; duplicates {w['duplicates']}; "
            f"left {w['left']}, exit {w['sidecar_exit']}"
            f"{'' if ok else '  <-- NOT CLEAN'}); target >= {TARGET_SHARE:.0%} of bare "
            f"{'met' if share >= TARGET_SHARE else 'MISSED'}"
        )
        for name, rows in (w.get("profile") or {}).items():
            print(f"      py-spy own time, {name}:")
            for share_, fn in rows[:10]:
                print(f"        {share_:6.1%}  {fn}")


def maybe_run(sections, args, results: dict) -> None:
    if "pubsub" in sections:
        bench(args, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--max-messages", type=int, default=128, help="flow control, both loops")
    parser.add_argument("--synchronous", action="append", help="SQLite synchronous mode(s) (default: normal)")
    parser.add_argument("--lease-extension", type=int, help="WOJAK_SIDECAR_PUBSUB_LEASE_EXTENSION (default: the sidecar's)")
    parser.add_argument("--profile", help="py-spy both processes for 3 s mid-run; raw files under this directory")
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict = {}
    bench(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
