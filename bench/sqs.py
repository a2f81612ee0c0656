"""SQS ingest (and SNS through SQS): a bare receive + delete loop vs the wojak SQS (or SNS)
sidecar + engine, on the same AWS emulator in the same run.

    python bench/sqs.py                     # 1,000 orders, SQS
    python bench/sqs.py --broker sns        # published to a topic, read from its queue
    python bench/run.py --only sqs          # the SQS section from the main harness

Needs the AWS emulator: ``scripts/services up aws`` (WOJAK_TEST_AWS_ENDPOINT). moto spends time in
proportion to a queue's depth on every message it hands out, so N is small and the figures say
more about moto than about SQS; the ratio is what is comparable.

* bare: ReceiveMessage (10 a batch, long poll 1 s) + DeleteMessageBatch in 3 threads (the
  sidecar's receivers), first receive -> N-th delete.
* wojak: a real ``wojak engine`` (SQLite, in-process sandbox) and ``wojak sidecar sqs|sns``;
  first ack -> N-th ack on the sidecar's /metrics; then SIGTERM, and the queue must be empty.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import free_port, process, progress, workdir  # noqa: E402
from bench._sidecar import cpu_text, engine_ready, per_order_us, until_acked  # noqa: E402
from bench.rabbitmq import bodies  # noqa: E402

PY = sys.executable
ENDPOINT = os.environ.get("WOJAK_TEST_AWS_ENDPOINT") or "http://127.0.0.1:5000"
REGION = "us-east-1"
TARGET_SHARE = 0.5
RECEIVERS = 3


def client(service: str) -> Any:
    import boto3

    return boto3.client(
        service, endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


class Queue:
    def __init__(self, broker: str) -> None:
        self.sqs = client("sqs")
        prefix = f"wojak-bench-{uuid.uuid4().hex[:10]}"
        self.dlq_url = self.sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
        self.url = self.sqs.create_queue(QueueName=prefix)["QueueUrl"]
        self.topic_arn = ""
        if broker == "sns":
            self.sns = client("sns")
            self.topic_arn = self.sns.create_topic(Name=prefix)["TopicArn"]
            arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn)

    def preload(self, messages: list[tuple[bytes, str]]) -> float:
        started = time.perf_counter()
        for k in range(0, len(messages), 10):
            chunk = messages[k : k + 10]
            if self.topic_arn:
                entries = [{"Id": str(i), "Message": body.decode()} for i, (body, _) in enumerate(chunk)]
                self.sns.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
            else:
                entries = [{"Id": str(i), "MessageBody": body.decode()} for i, (body, _) in enumerate(chunk)]
                self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        return time.perf_counter() - started

    def left(self) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        got = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        return sum(int(got.get(n, 0)) for n in names)

    def close(self) -> None:
        for url in (self.url, self.dlq_url):
            try:
                self.sqs.delete_queue(QueueUrl=url)
            except Exception:
                pass
        if self.topic_arn:
            try:
                self.sns.delete_topic(TopicArn=self.topic_arn)
            except Exception:
                pass


def run_bare(n: int, broker: str) -> dict:
    queue = Queue(broker)
    try:
        preload = queue.preload(bodies(n, "bare"))
        state = {"n": 0, "first": 0.0, "last": 0.0}
        lock = threading.Lock()
        cpu0 = time.process_time()

        def receive() -> None:
            sqs = client("sqs")
            while True:
                with lock:
                    if state["n"] >= n:
                        return
                got = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages")
                if not got:
                    continue
                with lock:
                    if state["first"] == 0.0:
                        state["first"] = time.perf_counter()
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                sqs.delete_message_batch(QueueUrl=queue.url, Entries=entries)
                with lock:
                    state["n"] += len(got)
                    if state["n"] >= n and state["last"] == 0.0:
                        state["last"] = time.perf_counter()

        threads = [threading.Thread(target=receive) for _ in range(RECEIVERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(900)
        cpu = time.process_time() - cpu0
        left = queue.left()
    finally:
        queue.close()
    secs = state["last"] - state["first"]
    return {"orders": n, "seconds": secs, "per_s": n / secs, "left": left, "preload_s": preload, "cpu_us": cpu / n * 1e6}


async def run_wojak(n: int, broker: str, synchronous: str) -> dict:
    queue = Queue(broker)
    try:
        preload = queue.preload(bodies(n, f"w{uuid.uuid4().hex[:6]}"))
        with workdir() as tmp:
            sock = tmp / "run" / "engine.sock"
            engine_env = {
                "WOJAK_ENGINE_SOCKET": str(sock),
                "WOJAK_LOG_LEVEL": "WARNING",
                "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}",
                "WOJAK_VENUE": "sandbox",
            }
            port = free_port()
            prefix = f"WOJAK_SIDECAR_{broker.upper()}_"
            sidecar_env = {
                "WOJAK_ENGINE_SOCKET": str(sock),
                "WOJAK_LOG_LEVEL": "WARNING",
                "WOJAK_SIDECAR_ACCOUNTS": "acct-*",
                "WOJAK_SIDECAR_HEALTH_PORT": str(port),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                prefix + "QUEUE_URL": queue.url,
                prefix + "DEAD_LETTER_QUEUE_URL": queue.dlq_url,
                prefix + "ENDPOINT": ENDPOINT,
                prefix + "REGION": REGION,
                prefix + "WAIT_TIME": "1",
                prefix + "RECEIVERS": str(RECEIVERS),
            }
            if broker == "sns":
                sidecar_env[prefix + "TOPIC_ARN"] = queue.topic_arn
            with process([PY, "-m", "wojak", "engine"], engine_env, tmp / "engine.log") as engine:
                await engine_ready(sock)
                with process([PY, "-m", "wojak", "sidecar", broker], sidecar_env, tmp / "sidecar.log") as sidecar:
                    run = await until_acked(sidecar, engine, port, n, tmp)
                    sidecar.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(sidecar.wait, 30)
        left = queue.left()
    finally:
        queue.close()
    secs = run["t1"] - run["t0"]
    return {
        "synchronous": synchronous,
        "orders": n,
        "seconds": secs,
        "per_s": n / secs,
        "left": left,
        "sidecar_exit": code,
        "preload_s": preload,
        "cpu_us_per_order": per_order_us(run["cpu0"], run["cpu"], n),
    }


def bench(args, results: dict, broker: str = "sqs") -> None:
    n = getattr(args, "sqs_orders", None) or getattr(args, "orders", None) or 1000
    sync = (getattr(args, "synchronous", None) or ["normal"])[-1]
    progress(f"bare receive + delete ({broker}), {RECEIVERS} receivers, {n:,} messages")
    out: dict = {"bare": run_bare(n, broker)}
    progress(f"wojak sidecar {broker} + engine (SQLite synchronous={sync}), {n:,} orders")
    out["wojak"] = asyncio.run(run_wojak(n, broker, sync))
    results[broker] = out
    b, w = out["bare"], out["wojak"]
    share = w["per_s"] / b["per_s"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n  {broker.upper()} ingest on moto ({os.cpu_count()} cores, load average {load}; {RECEIVERS} receivers)")
    print(f"    bare receive+delete  {b['per_s']:8,.0f} msg/s    ({b['orders']:,} in {b['seconds']:.2f} s; left {b['left']})")
    print(
        f"    wojak sync={w['synchronous']:<6}    {w['per_s']:8,.0f} orders/s = {share:4.0%} of bare ({w['orders']:,} in "
        f"{w['seconds']:.2f} s; CPU us/order {cpu_text(w)}; left {w['left']}, exit {w['sidecar_exit']}); target >= "
        f"{TARGET_SHARE:.0%} of bare {'met' if share >= TARGET_SHARE else 'MISSED'}"
    )


def maybe_run(sections, args, results: dict) -> None:
    for broker in ("sqs", "sns"):
        if broker in sections:
            bench(args, results, broker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--broker", choices=["sqs", "sns"], default="sqs")
    parser.add_argument("--synchronous", action="append", help="SQLite synchronous mode (default: normal)")
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict = {}
    bench(args, results, args.broker)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
