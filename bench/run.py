"""wojak benchmarks. Every figure is printed next to a baseline measured in the same run.

    python bench/run.py                 # everything
    python bench/run.py --only engine   # zmq baseline + engine
    python bench/run.py --json out.json

Sections:
  engine  raw pyzmq DEALER/ROUTER round trip over ipc (bare echo) vs the full engine path
          (validate, risk, SQLite, in-process sandbox), unloaded (one at a time) and pipelined.
  lanes   one account's venue slow (200 ms), the others fast: the fast accounts' p50 vs all fast.
  http    wrk against a bare FastAPI endpoint returning a constant vs the wojak HTTP sidecar
          + engine (two processes, like the pod): max throughput, then paced at ~1,000/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import kafka as kafka_bench  # noqa: E402  (--only kafka: see bench/kafka.py)
from bench import kinesis as kinesis_bench  # noqa: E402  (--only kinesis: see bench/kinesis.py)
from bench import lanes as lanes_bench  # noqa: E402  (--only lanes: see bench/lanes.py)
from bench import pubsub as pubsub_bench  # noqa: E402  (--only pubsub: see bench/pubsub.py)
from bench import rabbitmq as rabbitmq_bench  # noqa: E402  (--only rabbitmq: see bench/rabbitmq.py)
from bench import sqs as sqs_bench  # noqa: E402  (--only sqs / sns: see bench/sqs.py)
from bench._common import cpu_seconds, free_port, process, progress, py_spy, rss_mb, summary, wait_until, workdir  # noqa: E402
from bench.paced import paced  # noqa: E402
from bench.zmq_client import PRINCIPAL, Client, order_frames, order_requests  # noqa: E402
from wojak.engine.protocol import MessageType, encode_frames  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
KEY = "bench-key-0123456789abcdef"
TICK = {"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"}


def engine_env(tmp: Path, sock: Path, synchronous: str = "full") -> dict[str, str]:
    return {
        "WOJAK_ENGINE_SOCKET": str(sock),
        "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}",
        "WOJAK_VENUE": "sandbox",  # the in-process sandbox (no ledger: that is a test aid)
        "WOJAK_LOG_LEVEL": "WARNING",
    }


def start_engine(tmp: Path, sock: Path, synchronous: str, lanes: int | None = None):
    env = engine_env(tmp, sock, synchronous)
    if lanes is not None:
        env["WOJAK_ENGINE_LANES"] = str(lanes)
    ctx = process([PY, "-m", "wojak", "engine"], env, tmp / "engine.log")
    proc = ctx.__enter__()

    def ready() -> bool:
        c = Client(str(sock))
        c.sock.setsockopt(__import__("zmq").RCVTIMEO, 300)
        try:
            c.call(encode_frames(MessageType.PING, {"request_id": 0}))
            return True
        except Exception:
            return False
        finally:
            c.close()

    wait_until(ready, what="engine")
    return ctx, proc


def bench_engine(args, results: dict) -> None:
    with workdir() as tmp:
        echo_sock = tmp / "echo.sock"
        progress("raw pyzmq DEALER/ROUTER echo over ipc")
        with process([PY, str(HERE / "zmq_echo.py"), str(echo_sock)]):
            wait_until(echo_sock.exists, what="echo server")
            client = Client(str(echo_sock))
            frames = order_frames(args.unloaded + 200, "warm")
            client.unloaded(frames[:200])
            raw_lat = summary(client.unloaded(frames[200:]))
            frames = order_frames(args.pipelined, "raw")
            secs, _ = client.pipelined(frames, args.window)
            raw_rate = len(frames) / secs
            client.close()
        results["zmq_raw"] = {"unloaded_us": {k: v * 1e6 for k, v in raw_lat.items()}, "pipelined_per_s": raw_rate}
        results["durable_floor"] = durable_floor(tmp)

        for synchronous, lanes in [(s, n) for s in args.synchronous for n in args.lanes or [None]]:
            name = synchronous if lanes is None else f"{synchronous}_lanes{lanes}"
            progress(f"wojak engine (SQLite synchronous={synchronous}, lanes={lanes or 'default'}, in-process sandbox)")
            sock = tmp / f"engine-{name}" / "engine.sock"
            data = tmp / f"data-{name}"
            data.mkdir()
            ctx, proc = start_engine(data, sock, synchronous, lanes)
            try:
                client = Client(str(sock))
                client.call(encode_frames(MessageType.TICK, {"request_id": 0, "tick": TICK, "principal": PRINCIPAL}))
                client.unloaded(order_frames(200, "warm"))
                lat = summary(client.unloaded(order_frames(args.unloaded, "unl")))
                frames = order_frames(args.pipelined, "pip")
                before = _batches(client)
                cpu = cpu_seconds(proc.pid)
                profiler = _profile(Path(args.profile) / f"engine-{name}.raw", proc.pid) if args.profile else None
                secs, replies = client.pipelined(frames, args.window)
                cpu = cpu_seconds(proc.pid) - cpu
                if profiler is not None:
                    profiler.wait()
                after = _batches(client)
                # the same orders framed as the sidecars frame them: submit_orders of 64
                requests = order_requests(args.pipelined, "req", 64)
                batched_cpu = cpu_seconds(proc.pid)
                batched_secs, batched_verdicts = client.pipelined_batches(requests, 64, max(1, args.window // 64))
                batched_cpu = cpu_seconds(proc.pid) - batched_cpu
                rss = rss_mb(proc.pid)
                verdicts: dict[str, int] = {}
                for r in replies:
                    verdicts[r.get("verdict")] = verdicts.get(r.get("verdict"), 0) + 1
                client.close()
            finally:
                ctx.__exit__(None, None, None)
            if args.profile:
                results[f"profile_engine_{name}"] = rabbitmq_bench.own_time(Path(args.profile) / f"engine-{name}.raw", 20)
            results[f"engine_{name}"] = {
                "unloaded_us": {k: v * 1e6 for k, v in lat.items()},
                "pipelined_per_s": len(frames) / secs,
                "engine_cpu_us_per_order": cpu / len(frames) * 1e6,
                "engine_rss_mb": rss,
                "verdicts": verdicts,
                "mean_batch": (after[1] - before[1]) / max(1.0, after[0] - before[0]),
                "requests_of_64": {
                    "pipelined_per_s": args.pipelined / batched_secs,
                    "engine_cpu_us_per_order": batched_cpu / args.pipelined * 1e6,
                    "verdicts": batched_verdicts,
                },
            }


def durable_floor(directory: Path, commits: int = 2000, pages: int = 7) -> dict:
    """What one durable commit costs this disk at least: the pages of a small commit (an order's
    admit or record writes about 7 to the WAL) written in place, then fdatasync, as SQLite's
    synchronous=full does; the unloaded order path has two of them."""
    path = directory / "floor"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\0" * (256 * 4096))
        os.fsync(fd)
        page, lat = b"x" * 4096, []
        cpu = time.process_time()
        for i in range(commits):
            t = time.perf_counter()
            for k in range(pages):
                os.pwrite(fd, page, ((i * pages + k) % 256) * 4096)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
        cpu = time.process_time() - cpu
    finally:
        os.close(fd)
        path.unlink()
    s = summary(lat)
    return {"pages": pages, "directory": str(directory), "p50_us": s["p50"] * 1e6, "p99_us": s["p99"] * 1e6,
            "cpu_us": cpu / commits * 1e6}  # fmt: skip


def _profile(out: Path, pid: int, seconds: int = 4) -> subprocess.Popen[bytes]:
    """py-spy the process for ``seconds`` (raw folded stacks; ``rabbitmq_bench.own_time`` sums them)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _batches(client: Client) -> tuple[float, float]:
    """(batches, requests) processed so far, from the engine's own metrics."""
    import msgpack

    text = msgpack.unpackb(client.call(encode_frames(MessageType.METRICS, {"request_id": -1}))[2])["text"]
    count = re.search(r"wojak_engine_batch_size_count (\S+)", text)
    total = re.search(r"wojak_engine_batch_size_sum (\S+)", text)
    return float(count.group(1)), float(total.group(1))


def wrk(url: str, duration: int, connections: int, delay_ms: int, prefix: str) -> dict:
    env = {**os.environ, "WOJAK_BENCH_KEY": KEY, "WOJAK_BENCH_PREFIX": prefix, "WOJAK_BENCH_DELAY_MS": str(delay_ms)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / "wrk_orders.lua"), url],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(l for l in out.stdout.splitlines() if l.startswith("WRKJSON "))
    data = json.loads(line[8:])
    data["per_s"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=0.5) as r:
        return r.status == 200


def bench_http(args, results: dict) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench http needs wrk: apt-get install -y wrk")
    with workdir() as tmp:
        port = free_port()
        progress("bare FastAPI endpoint (constant reply)")
        with process([PY, str(HERE / "bare_app.py"), str(port)], log=tmp / "bare.log"):
            wait_until(lambda: _port_open(port), what="bare app")
            url = f"http://127.0.0.1:{port}/v1/orders"
            wrk(url, 2, args.connections, 0, "warm")
            bare = wrk(url, args.duration, args.connections, 0, "bare")
            bare_paced = paced(url, KEY, args.rate, args.duration, 10, "barepaced")
    results["http_bare"] = {"max": bare, "paced": bare_paced}
    for synchronous in args.synchronous:
        with workdir() as tmp:
            sock = tmp / "run" / "engine.sock"
            port = free_port()
            progress(f"wojak HTTP sidecar + engine (SQLite synchronous={synchronous}, in-process sandbox)")
            ctx, engine_proc = start_engine(tmp, sock, synchronous)
            try:
                env = {
                    "WOJAK_ENGINE_SOCKET": str(sock),
                    "WOJAK_API_KEYS": KEY,
                    "WOJAK_SIDECAR_PORT": str(port),
                    "WOJAK_LOG_LEVEL": "WARNING",
                }
                with process([PY, "-m", "wojak", "sidecar", "http"], env, tmp / "sidecar.log") as sidecar_proc:
                    base = f"http://127.0.0.1:{port}"
                    wait_until(lambda: http_ok(base + "/readyz"), what="HTTP sidecar")
                    req = urllib.request.Request(base + "/v1/ticks", data=json.dumps(TICK).encode(), method="POST",
                                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})  # fmt: skip
                    urllib.request.urlopen(req).read()
                    wrk(base + "/v1/orders", 2, args.connections, 0, "warm")
                    profilers = []
                    if args.profile:
                        profilers = [_profile(Path(args.profile) / f"http-{name}-{synchronous}.raw", pid)
                                     for name, pid in (("sidecar", sidecar_proc.pid), ("engine", engine_proc.pid))]  # fmt: skip
                    full = wrk(base + "/v1/orders", args.duration, args.connections, 0, "max")
                    for p in profilers:
                        p.wait()
                    steady = [
                        paced(base + "/v1/orders", KEY, args.rate, args.duration, 10, f"paced{i}") for i in range(args.paced_runs)
                    ]
                    rss = {"engine": rss_mb(engine_proc.pid), "sidecar": rss_mb(sidecar_proc.pid)}
            finally:
                ctx.__exit__(None, None, None)
        results[f"http_wojak_{synchronous}"] = {"max": full, "paced": steady[0], "paced_runs": steady, "rss_mb": rss}
        if args.profile:
            results[f"http_wojak_{synchronous}"]["profile"] = {
                name: rabbitmq_bench.own_time(Path(args.profile) / f"http-{name}-{synchronous}.raw", 20)
                for name in ("sidecar", "engine")
            }


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def report(results: dict) -> None:
    print("\nwojak benchmarks (same machine, same run)")
    print(f"  machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if "zmq_raw" in results:
        raw = results["zmq_raw"]
        print("\n  engine over ipc (one blocking DEALER client for both)")
        print(f"    raw pyzmq echo         unloaded p50 {raw['unloaded_us']['p50']:7.1f} us  p99 {raw['unloaded_us']['p99']:7.1f} us"
              f"   pipelined {raw['pipelined_per_s']:9,.0f} msg/s")  # fmt: skip
        for key, r in results.items():
            if not key.startswith("engine_"):
                continue
            ratio = r["unloaded_us"]["p50"] / raw["unloaded_us"]["p50"]
            print(f"    {key:<22} unloaded p50 {r['unloaded_us']['p50']:7.1f} us  p99 {r['unloaded_us']['p99']:7.1f} us"
                  f"   pipelined {r['pipelined_per_s']:9,.0f} orders/s   (mean batch {r['mean_batch']:.0f},"
                  f" engine CPU {r['engine_cpu_us_per_order']:.1f} us/order, engine RSS {r['engine_rss_mb']:.0f} MB at the end)")  # fmt: skip
            for share_, fn in results.get(f"profile_{key}", [])[:12]:
                print(f"      py-spy own time {share_:6.1%}  {fn}")
            print(f"    {'':<22} unloaded p50 = {ratio:.1f}x raw (target <= 6x);"
                  f" pipelined = {r['pipelined_per_s'] / raw['pipelined_per_s']:.2f}x raw; target >= 20,000/s:"
                  f" {'met' if r['pipelined_per_s'] >= 20000 else 'MISSED'}; verdicts {r['verdicts']}")  # fmt: skip
            b64 = r.get("requests_of_64")
            if b64:
                print(f"    {'':<22} the same orders as submit_orders requests of 64 (the sidecars' framing):"
                      f" {b64['pipelined_per_s']:,.0f} orders/s, engine CPU {b64['engine_cpu_us_per_order']:.1f} us/order;"
                      f" verdicts {b64['verdicts']}")  # fmt: skip
        if "durable_floor" in results:
            f = results["durable_floor"]
            floor = 2 * f["p50_us"] + raw["unloaded_us"]["p50"]
            print(f"    durable floor: one commit's WAL write ({f['pages']} pages) + fdatasync in {f['directory']}: p50 {f['p50_us']:.0f} us,"
                  f" p99 {f['p99_us']:.0f} us, CPU {f['cpu_us']:.0f} us; an order needs two (admit before the venue,"
                  f" record before the reply): with the raw round trip {floor:.0f} us = {floor / raw['unloaded_us']['p50']:.1f}x raw"
                  f" before any of the engine's own work")  # fmt: skip
    if "http_bare" in results:
        bare = results["http_bare"]
        print("\n  HTTP end to end (max: wrk, 1 thread, 32 connections; paced: a constant-rate client, 10 connections)")
        rows = [("bare FastAPI", bare)] + [(k.replace("http_wojak_", "wojak "), v) for k, v in results.items()
                                            if k.startswith("http_wojak_")]  # fmt: skip
        for name, r in rows:
            m, p = r["max"], r["paced"]
            print(f"    {name:<13} max {m['per_s']:8,.0f} req/s (p99 {m['p99_us'] / 1000:6.2f} ms, non-2xx {m['status_errors']})"
                  f"   paced {p['per_s']:6,.0f} req/s: p50 {p['p50_us'] / 1000:5.2f} ms  p99 {p['p99_us'] / 1000:5.2f} ms")  # fmt: skip
        for name, full in rows[1:]:
            runs = full.get("paced_runs") or [full["paced"]]
            p99s = ", ".join(f"{p['p99_us'] / 1000:.1f}" for p in runs)
            met = sum(p["p99_us"] <= 10000 for p in runs)
            print(f"    {name}: paced p99 of each run (ms): {p99s}: <= 10 ms in {met} of {len(runs)};"
                  f" RSS at the end: engine {full['rss_mb']['engine']:.0f} MB, sidecar {full['rss_mb']['sidecar']:.0f} MB")  # fmt: skip
            for who, rows_ in (full.get("profile") or {}).items():
                print(f"      py-spy own time, {who} (wrk max run):")
                for share_, fn in rows_[:12]:
                    print(f"        {share_:6.1%}  {fn}")
            share = full["max"]["per_s"] / bare["max"]["per_s"]
            print(f"    {name}: {share:.0%} of bare (target >= 50%); >= 3,000/s: {'met' if full['max']['per_s'] >= 3000 else 'MISSED'};"
                  f" p99 at {full['paced']['per_s']:,.0f}/s <= 10 ms: {'met' if full['paced']['p99_us'] <= 10000 else 'MISSED'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", choices=["engine", "http", "rabbitmq", "kafka", "kinesis", "lanes", "pubsub", "sqs", "sns"], action="append"
    )
    parser.add_argument("--unloaded", type=int, default=3000, help="sequential requests for latency")
    parser.add_argument("--pipelined", type=int, default=60000, help="orders for the pipelined run")
    parser.add_argument("--window", type=int, default=2000, help="requests in flight when pipelined")
    parser.add_argument("--synchronous", action="append", help="SQLite synchronous mode(s) (default: full, normal)")
    parser.add_argument("--lanes", type=int, action="append", help="engine section: WOJAK_ENGINE_LANES (repeat to compare)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000, help="orders/s offered in the paced HTTP run")
    parser.add_argument("--paced-runs", type=int, default=5, help="paced HTTP runs (the p99 target holds in every one)")
    parser.add_argument("--profile", help="py-spy the engine for 4 s of the pipelined run; raw stacks under this directory")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.synchronous = args.synchronous or ["full", "normal"]
    results: dict = {}
    sections = args.only or ["engine", "http"]
    if "engine" in sections:
        bench_engine(args, results)
    if "http" in sections:
        bench_http(args, results)
    rabbitmq_bench.maybe_run(sections, args, results)  # prints its own report; 20,000 orders, prefetch 64
    kafka_bench.maybe_run(sections, args, results)  # prints its own report; 20,000 orders, 8 partitions, prefetch 256
    pubsub_bench.maybe_run(sections, args, results)  # prints its own report; 5,000 orders, flow control 128
    sqs_bench.maybe_run(sections, args, results)  # prints its own report; 1,000 orders (moto), 3 receivers
    kinesis_bench.maybe_run(sections, args, results)  # prints its own report; 10,000 orders, 4 shards on moto
    lanes_bench.maybe_run(sections, args, results)  # prints its own report; one account's venue 200 ms
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
