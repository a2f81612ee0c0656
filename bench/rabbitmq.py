"""RabbitMQ ingest: a bare aio-pika consume+ack loop vs the wojak RabbitMQ sidecar + engine.

    python bench/rabbitmq.py                          # prefetch 64 (the sidecar's default), full + normal
    python bench/rabbitmq.py --prefetch 64 --prefetch 256 --synchronous full
    python bench/rabbitmq.py --sweep                  # the prefetch curve (concurrency = prefetch)
    python bench/run.py --only rabbitmq               # the same section from the main harness

Needs a RabbitMQ on loopback: ``scripts/services up rabbitmq`` (the URL comes from
WOJAK_TEST_RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672/).

Every run gets its own queue, DLX and DLQ, declared exactly as the sidecar declares them
(``declare_topology``), and is preloaded with the same N persistent JSON orders (unique
client_order_id = message_id, 100 accounts, alternating buy/sell, NIFTY-FUT limit 24000),
published with publisher confirms before anything consumes.

* baseline: a separate process (uvloop, ``connect_robust``, same prefetch) whose callback acks
  every delivery; it times its own first delivery -> last ack.
* wojak: a real ``wojak engine`` (SQLite store, in-process sandbox, ticked first over its
  socket) and a real ``wojak sidecar rabbitmq`` (its defaults, except prefetch/concurrency).
  Start = the broker's ready count first drops below N (passive declare polled every 5 ms);
  end = the sidecar's own /metrics shows N acks (polled every 20 ms). The sidecar is then
  stopped with SIGTERM, and the queue must hold 0 messages: nothing was left unacked.

The figure is orders/s over that window; the ratio is wojak / bare at the same prefetch.
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

from bench._common import free_port, process, progress, py_spy, rss_mb, workdir  # noqa: E402
from bench._sidecar import counter, cpu_text, engine_ready, metrics_text, per_order_us, verdicts  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
URL = os.environ.get("WOJAK_TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/"
TARGET_RATE, TARGET_SHARE = 5000, 0.6  # issue 11: >= 60% of the bare loop


def bodies(n: int, prefix: str, accounts: int = 100) -> list[tuple[bytes, str]]:
    """(JSON body, message id): the orders of bench/zmq_client.order_frames, as a publisher sends them."""
    out = []
    for i in range(n):
        coid = f"{prefix}-{i}"
        order = {"client_order_id": coid, "account": f"acct-{i % accounts}", "symbol": "NIFTY-FUT",
                 "side": "buy" if i % 2 else "sell", "quantity": "1", "order_type": "limit",
                 "limit_price": "24000", "time_in_force": "day"}  # fmt: skip
        out.append((json.dumps(order, separators=(",", ":")).encode(), coid))
    return out


def queue_config(prefix: str, prefetch: int):
    from wojak.sidecars.rabbitmq.config import RabbitMQSidecarSettings

    return RabbitMQSidecarSettings(url=URL, queue=f"{prefix}.orders", prefetch=prefetch,
                                 dead_letter_exchange=f"{prefix}.dlx", dead_letter_queue=f"{prefix}.dlq")  # fmt: skip


class Broker:
    """The bench's own connection: topology, preload, counts, cleanup."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    async def __aenter__(self) -> "Broker":
        import aio_pika

        from wojak.sidecars.rabbitmq.source import declare_topology

        self.connection = await aio_pika.connect(URL)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.queue, self.dlx, _ = await declare_topology(self.channel, self.cfg)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.channel.queue_delete(self.cfg.queue)
            await self.channel.queue_delete(self.cfg.dead_letter_queue)
            await self.channel.exchange_delete(self.cfg.dead_letter_exchange)
        finally:
            await self.connection.close()

    async def preload(self, messages: list[tuple[bytes, str]], chunk: int = 1000) -> float:
        import aio_pika

        started = time.perf_counter()
        exchange = self.channel.default_exchange
        for k in range(0, len(messages), chunk):
            await asyncio.gather(*(
                exchange.publish(aio_pika.Message(body, message_id=mid, content_type="application/json",
                                                  delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                 routing_key=self.cfg.queue)
                for body, mid in messages[k : k + chunk]
            ))  # fmt: skip
        return time.perf_counter() - started

    async def count(self, name: str | None = None) -> int:
        """Ready messages, by a fresh passive declare (a robust channel would cache it)."""
        result = await self.channel.declare_queue(name or self.cfg.queue, passive=True)
        return result.declaration_result.message_count or 0

    async def first_delivery(self, total: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
        """perf_counter() when the ready count first drops below ``total`` (polled every 5 ms)."""
        deadline = time.monotonic() + timeout
        while await self.count() >= total:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no delivery (process exit code {proc.poll()})")
            await asyncio.sleep(0.005)
        return time.perf_counter()


# -- the baseline: a bare consume+ack loop, in its own process -------------------------


async def _bare(queue_name: str, prefetch: int, total: int) -> dict:
    import aio_pika

    connection = await aio_pika.connect_robust(URL)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(queue_name, ensure=True)
    done = asyncio.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0}

    async def on_message(message) -> None:
        if state["n"] == 0:
            state["first"], state["cpu0"] = time.time(), time.process_time()
        await message.ack()
        state["n"] += 1
        if state["n"] == total:
            state["last"], state["cpu1"] = time.time(), time.process_time()
            done.set()

    await queue.consume(on_message, no_ack=False)
    await done.wait()
    await connection.close()
    return state


async def _faststream(queue_name: str, prefetch: int, total: int) -> dict:
    """A FastStream RabbitMQ subscriber doing nothing (its default decoding and ack policy)."""
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    broker = RabbitBroker(URL, default_channel=Channel(prefetch_count=prefetch), logger=None)
    done = asyncio.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0}

    @broker.subscriber(RabbitQueue(queue_name, declare=False))
    async def on_order(order: dict) -> None:
        if state["n"] == 0:
            state["first"], state["cpu0"] = time.time(), time.process_time()
        state["n"] += 1
        if state["n"] == total:
            state["last"], state["cpu1"] = time.time(), time.process_time()
            done.set()

    await broker.start()
    await done.wait()
    await asyncio.sleep(0.2)  # the last ack goes out after the handler returns
    await broker.stop()
    return state


def bare_main(argv: list[str]) -> None:
    import uvloop

    queue_name, prefetch, total = argv[0], int(argv[1]), int(argv[2])
    consumer = _faststream if argv[3:] == ["faststream"] else _bare
    print(json.dumps(uvloop.run(consumer(queue_name, prefetch, total))), flush=True)


async def run_bare(n: int, prefetch: int, kind: str = "aio-pika") -> dict:
    cfg = queue_config(f"wojak-bench.{uuid.uuid4().hex[:10]}", prefetch)
    async with Broker(cfg) as broker:
        preload = await broker.preload(bodies(n, "bare"))
        assert await broker.count() == n
        cpu0 = broker_cpu()
        proc = subprocess.Popen([PY, __file__, "--bare-consumer", cfg.queue, str(prefetch), str(n)]
                                + (["faststream"] if kind == "faststream" else []), stdout=subprocess.PIPE)  # fmt: skip
        out, _ = await asyncio.to_thread(proc.communicate, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"bare consumer exited {proc.returncode}")
        r = json.loads(out.decode().strip().splitlines()[-1])
        broker_us = (broker_cpu() - cpu0) / n * 1e6
        left = await broker.count()
    secs = r["last"] - r["first"]
    return {"kind": kind, "prefetch": prefetch, "orders": n, "seconds": secs, "per_s": n / secs, "left": left, "preload_s": preload,
            "cpu_us_per_order": {"consumer": (r["cpu1"] - r["cpu0"]) / n * 1e6, "broker": broker_us}}  # fmt: skip


# -- the subject: wojak sidecar + engine --------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process, from /proc (0 where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The local RabbitMQ's Erlang VM (read-only, for CPU accounting), if there is exactly one."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "beam.smp":
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return pids[0] if len(pids) == 1 else None


def broker_cpu() -> float:
    return cpu_seconds(broker_pid())


def check(proc: subprocess.Popen[bytes], tmp: Path, t0: float, n: int, what: str, limit: float = 300.0) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"sidecar exited {proc.returncode}:\n" + (tmp / "sidecar.log").read_text()[-3000:])
    if time.perf_counter() - t0 > limit:
        raise RuntimeError(f"not all {n} {what} after {limit:.0f} s:\n" + (tmp / "sidecar.log").read_text()[-3000:])


async def run_wojak(n: int, prefetch: int, concurrency: int | None, synchronous: str, profile: Path | None = None,
                    env: dict[str, str] | None = None) -> dict:
    cfg = queue_config(f"wojak-bench.{uuid.uuid4().hex[:10]}", prefetch)
    with workdir() as tmp:
        sock = tmp / "run" / "engine.sock"
        engine_env = {"WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_LOG_LEVEL": "WARNING",
                      "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}",
                      "WOJAK_VENUE": "sandbox"}  # fmt: skip
        port = free_port()
        sidecar_env = {"WOJAK_ENGINE_SOCKET": str(sock), "WOJAK_LOG_LEVEL": "WARNING",
                       "WOJAK_SIDECAR_RABBITMQ_URL": URL, "WOJAK_SIDECAR_RABBITMQ_QUEUE": cfg.queue,
                       "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": cfg.dead_letter_exchange,
                       "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": cfg.dead_letter_queue,
                       "WOJAK_SIDECAR_RABBITMQ_PREFETCH": str(prefetch), "WOJAK_SIDECAR_HEALTH_PORT": str(port)}  # fmt: skip
        if concurrency:
            sidecar_env["WOJAK_SIDECAR_CONCURRENCY"] = str(concurrency)
        engine_env.update(env or {})  # a variant's settings (both processes read only their own)
        sidecar_env.update(env or {})
        async with Broker(cfg) as broker:
            preload = await broker.preload(bodies(n, f"w{uuid.uuid4().hex[:6]}"))
            assert await broker.count() == n
            with process([PY, "-m", "wojak", "engine"], engine_env, tmp / "engine.log") as engine:
                await engine_ready(sock)
                with process([PY, "-m", "wojak", "sidecar", "rabbitmq"], sidecar_env, tmp / "sidecar.log") as sidecar:
                    spawned = time.perf_counter()
                    t0 = await broker.first_delivery(n, sidecar)
                    profilers = _profile(profile, engine.pid, sidecar.pid) if profile else []
                    cpu0 = {"sidecar": cpu_seconds(sidecar.pid), "engine": cpu_seconds(engine.pid), "broker": broker_cpu()}
                    # the broker's ready count until it is 0 (cheap for the processes measured), then the
                    # sidecar's /metrics (it also asks the engine) for the last <= prefetch acks
                    while await broker.count() > 0:
                        check(sidecar, tmp, t0, n, "delivered")
                        await asyncio.sleep(0.01)
                    acked = 0.0
                    while True:
                        try:
                            text = await asyncio.to_thread(metrics_text, port)
                        except OSError:
                            text = ""
                        acked = counter(text, "wojak_sidecar_settlements", settlement="ack")
                        if acked >= n:
                            break
                        check(sidecar, tmp, t0, n, f"acked ({acked:.0f})")
                        await asyncio.sleep(0.01)
                    t1 = time.perf_counter()
                    cpu = {"sidecar": cpu_seconds(sidecar.pid), "engine": cpu_seconds(engine.pid), "broker": broker_cpu()}
                    rss = {"sidecar": rss_mb(sidecar.pid), "engine": rss_mb(engine.pid)}
                    for p in profilers:
                        p.wait()
                    sidecar.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(sidecar.wait, 30)
            left, dead = await broker.count(), await broker.count(cfg.dead_letter_queue)
    batches = re.search(r"^wojak_engine_batch_size_count (\S+)$", text, re.M)
    sizes = re.search(r"^wojak_engine_batch_size_sum (\S+)$", text, re.M)
    secs = t1 - t0
    return {
        "prefetch": prefetch, "concurrency": min(concurrency or prefetch, prefetch), "synchronous": synchronous,
        "orders": n, "seconds": secs, "per_s": n / secs, "from_spawn_s": t1 - spawned, "left": left,
        "dead_lettered": dead, "sidecar_exit": code, "verdicts": verdicts(text, "rabbitmq"), "preload_s": preload,
        "cpu_us_per_order": per_order_us(cpu0, cpu, n), "rss_mb": rss,
        "variant": ",".join(f"{k}={v}" for k, v in (env or {}).items()) or "default",
        "mean_batch": float(sizes.group(1)) / float(batches.group(1)) if batches and sizes and float(batches.group(1)) else None,
    }  # fmt: skip


def _profile(out: Path, engine_pid: int, sidecar_pid: int, seconds: int = 3) -> list[subprocess.Popen[bytes]]:
    """py-spy both processes for ``seconds`` (raw folded stacks, aggregated by `own_time`)."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen([py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw",
                          "-o", str(out / f"{name}.raw")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        for name, pid in (("engine", engine_pid), ("sidecar", sidecar_pid))
    ]


def own_time(raw: Path, top: int = 15) -> list[tuple[float, str]]:
    """Leaf frames of py-spy's folded stacks -> share of samples (own time by function)."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        leaf = re.sub(r":\d+\)$", ")", leaf)  # by function, not line
        counts[leaf] = counts.get(leaf, 0) + int(n)
        total += int(n)
    return sorted(((c / total, f) for f, c in counts.items()), reverse=True)[:top]


# -- the section --------------------------------------------------------------------------


def bench(args, results: dict) -> None:
    """Fills results["rabbitmq"]; ``args`` may come from bench/run.py (only ``synchronous`` is shared)."""
    n = getattr(args, "orders", None) or 20000
    synchronous = getattr(args, "synchronous", None) or ["full", "normal"]
    prefetches = getattr(args, "prefetch", None) or [64]
    concurrency = getattr(args, "concurrency", None)
    if getattr(args, "sweep", False):
        prefetches = [16, 32, 64, 128, 256, 512, 1024]
    profile = getattr(args, "profile", None)
    variants = [_variant(v) for v in getattr(args, "variant", None) or []] or [{}]
    out: dict = {"bare": [], "wojak": []}
    for prefetch in prefetches:
        progress(f"bare aio-pika consume+ack, prefetch {prefetch}, {n:,} messages")
        out["bare"].append(asyncio.run(run_bare(n, prefetch)))
        if not getattr(args, "no_faststream", False):
            progress(f"FastStream RabbitMQ subscriber doing nothing, prefetch {prefetch}, {n:,} messages")
            out.setdefault("faststream", []).append(asyncio.run(run_bare(n, prefetch, "faststream")))
        for sync in synchronous:
            for i, env in enumerate(variants):
                progress(f"wojak sidecar rabbitmq + engine (SQLite synchronous={sync}), prefetch {prefetch}, {n:,} orders {env or ''}")
                where = Path(profile) / f"p{prefetch}-{sync}-{i}" if profile else None
                out["wojak"].append(asyncio.run(run_wojak(n, prefetch, concurrency, sync, where, env)))
                if where:
                    out["wojak"][-1]["profile"] = {name: own_time(where / f"{name}.raw") for name in ("sidecar", "engine")}
    results["rabbitmq"] = out
    report(out)


def report(out: dict) -> None:
    bare = {b["prefetch"]: b for b in out["bare"]}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n  RabbitMQ ingest ({os.cpu_count()} cores, load average {load} at the end; N preloaded persistent"
          " messages, drained and acked; CPU us/order from /proc: the broker's is its whole VM)")  # fmt: skip
    faststream = {b["prefetch"]: b for b in out.get("faststream", [])}
    for b in out.get("faststream", []):
        print(f"    FastStream subscriber      prefetch {b['prefetch']:>5}  {b['per_s']:9,.0f} msg/s"
              f"   ({b['orders']:,} in {b['seconds']:.2f} s; left {b['left']}; CPU us/msg {cpu_text(b)})")  # fmt: skip
    for b in out["bare"]:
        print(f"    bare aio-pika consume+ack  prefetch {b['prefetch']:>5}  {b['per_s']:9,.0f} msg/s"
              f"   ({b['orders']:,} in {b['seconds']:.2f} s; left {b['left']}; CPU us/msg {cpu_text(b)})")  # fmt: skip
    for w in out["wojak"]:
        share = w["per_s"] / bare[w["prefetch"]]["per_s"]
        ok = w["left"] == 0 and w["dead_lettered"] == 0 and w["sidecar_exit"] == 0
        if w.get("variant", "default") != "default":
            print(f"    variant: {w['variant']}")
        print(f"    wojak sync={w['synchronous']:<6}       prefetch {w['prefetch']:>5}  {w['per_s']:9,.0f} orders/s"
              f"  = {share:4.0%} of bare   ({w['orders']:,} in {w['seconds']:.2f} s, {w['from_spawn_s']:.2f} s from spawn;"
              f" CPU us/order {cpu_text(w)}; RSS MB sidecar {w['rss_mb']['sidecar']:.0f}, engine {w['rss_mb']['engine']:.0f}; mean engine batch {w['mean_batch'] or 0:.1f}; verdicts {w['verdicts']};"
              f" queue left {w['left']}, DLQ {w['dead_lettered']}, exit {w['sidecar_exit']}{'' if ok else '  <-- NOT CLEAN'})")  # fmt: skip
        fs = faststream.get(w["prefetch"])
        versus = f"; {w['per_s'] / fs['per_s']:.2f}x the FastStream subscriber doing nothing (aim >= 1.0x)" if fs else ""
        print(f"    {'':<26} targets: >= {TARGET_RATE:,}/s {'met' if w['per_s'] >= TARGET_RATE else 'MISSED'};"
              f" >= {TARGET_SHARE:.0%} of bare {'met' if share >= TARGET_SHARE else 'MISSED'}{versus}")  # fmt: skip
        for name, rows in (w.get("profile") or {}).items():
            print(f"      py-spy own time, {name}:")
            for share_, fn in rows[:10]:
                print(f"        {share_:6.1%}  {fn}")


def _variant(text: str) -> dict[str, str]:
    """``K=V,K=V`` (settings of one variant run) -> dict."""
    return dict(item.split("=", 1) for item in text.split(",") if item)


def maybe_run(sections, args, results: dict) -> None:
    """bench/run.py's hook: runs the section when ``--only rabbitmq`` was given."""
    if "rabbitmq" in sections:
        bench(args, results)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-consumer":
        bare_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20000, help="messages preloaded per run")
    parser.add_argument("--prefetch", type=int, action="append", help="sidecar/bare prefetch (repeatable; default 64)")
    parser.add_argument("--concurrency", type=int, help="WOJAK_SIDECAR_CONCURRENCY (default: = prefetch)")
    parser.add_argument("--synchronous", action="append", help="SQLite synchronous mode(s) (default: full, normal)")
    parser.add_argument("--sweep", action="store_true", help="prefetch 16..1024 (overrides --prefetch)")
    parser.add_argument("--profile", help="py-spy both processes for 3 s mid-run; raw files under this directory")
    parser.add_argument("--no-faststream", action="store_true", help="skip the FastStream subscriber baseline")
    parser.add_argument("--variant", action="append",
                        help="run wojak with these settings too, K=V,K=V (repeatable; e.g. WOJAK_SIDECAR_ENGINE_BATCH=1)")  # fmt: skip
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict = {}
    bench(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
