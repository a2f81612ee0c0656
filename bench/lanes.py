"""One account's venue slow (200 ms), the others fast: do the fast accounts wait?

    python bench/lanes.py                      # 200 orders/s for 6 s per phase, 50 fast accounts
    python bench/lanes.py --lanes 1            # the engine as it was: one batch at a time
    python bench/run.py --only lanes

One real ``wojak engine`` (SQLite full, in-process sandbox with
``WOJAK_SANDBOX_ACCOUNT_LATENCY_MS=acct-slow=200``), one open-loop client sending orders on a
fixed schedule (latency counted from when each order was due). Two phases against the same
engine, in the same run: **all fast** (only the fast accounts) and **one slow** (the same
orders, and one order in ten for ``acct-slow``, whose every venue call takes 200 ms). The
figure is the fast accounts' p50 (and p99) in the second phase over the first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import process, progress, summary, wait_until, workdir  # noqa: E402
from bench.zmq_client import PRINCIPAL  # noqa: E402
from wojak.engine.protocol import MessageType, encode_frames  # noqa: E402

PY = sys.executable
SLOW = "acct-slow"
TICK = {"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"}


def _order(i: int, prefix: str, account: str) -> list[bytes]:
    return encode_frames(MessageType.SUBMIT_ORDER, {"request_id": i, "order": {
        "client_order_id": f"{prefix}-{i}", "account": account, "symbol": "NIFTY-FUT", "side": "buy" if i % 2 else "sell",
        "quantity": "1", "order_type": "limit", "limit_price": "24000"}, "principal": PRINCIPAL})  # fmt: skip


def paced_phase(sock: zmq.Socket, prefix: str, rate: float, seconds: float, accounts: int, slow_every: int) -> dict:
    """Send ``rate`` orders/s for ``seconds`` (every ``slow_every``-th for the slow account, if
    any); latency of each from when it was due. Returns fast/slow summaries in ms."""
    n = int(rate * seconds)
    accounts_of = [SLOW if slow_every and i % slow_every == 0 else f"acct-{i % accounts}" for i in range(n)]
    frames = [_order(i, prefix, a) for i, a in enumerate(accounts_of)]
    due_at: dict[int, float] = {}
    fast: list[float] = []
    slow: list[float] = []
    verdicts: dict[str, int] = {}
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    start = time.perf_counter() + 0.05
    sent = received = 0
    while received < n:
        now = time.perf_counter()
        while sent < n and start + sent / rate <= now:
            due_at[sent] = start + sent / rate
            sock.send_multipart(frames[sent])
            sent += 1
        wait = (start + sent / rate - time.perf_counter()) if sent < n else 1.0
        if poller.poll(max(0, int(wait * 1000))):
            while True:
                try:
                    reply = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                done = time.perf_counter()
                body = msgpack.unpackb(reply[2])
                i = body["request_id"]
                (slow if accounts_of[i] == SLOW else fast).append(done - due_at.pop(i))
                verdicts[body["verdict"]] = verdicts.get(body["verdict"], 0) + 1
                received += 1
    out = {"fast_ms": {k: v * 1e3 for k, v in summary(fast).items()}, "verdicts": verdicts, "orders": n}
    if slow:
        out["slow_ms"] = {k: v * 1e3 for k, v in summary(slow).items()}
    return out


def run(rate: float, seconds: float, accounts: int, slow_every: int, lanes: int | None, synchronous: str = "full") -> dict:
    with workdir() as tmp:
        sock_path = tmp / "run" / "engine.sock"
        env = {
            "WOJAK_ENGINE_SOCKET": str(sock_path),
            "WOJAK_STORE": f"sqlite:///{tmp / 'wojak.sqlite'}?synchronous={synchronous}",
            "WOJAK_VENUE": "sandbox",
            "WOJAK_SANDBOX_ACCOUNT_LATENCY_MS": f"{SLOW}=200",
            "WOJAK_LOG_LEVEL": "WARNING",
        }
        if lanes is not None:
            env["WOJAK_ENGINE_LANES"] = str(lanes)
        progress(f"lanes bench: engine (SQLite {synchronous}, lanes={lanes or 'default'}), {rate:.0f} orders/s, {seconds:.0f} s a phase")
        with process([PY, "-m", "wojak", "engine"], env, tmp / "engine.log"):
            ctx = zmq.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"ipc://{sock_path}")
            try:
                wait_until(sock_path.exists, what="engine")
                sock.send_multipart(encode_frames(MessageType.TICK, {"request_id": -1, "tick": TICK, "principal": PRINCIPAL}))
                sock.recv_multipart()
                paced_phase(sock, "warm", rate, 1.0, accounts, 0)
                all_fast = paced_phase(sock, "fast", rate, seconds, accounts, 0)
                one_slow = paced_phase(sock, "mixed", rate, seconds, accounts, slow_every)
            finally:
                sock.close(0)
                ctx.term()
    return {"all_fast": all_fast, "one_slow": one_slow, "lanes": lanes, "rate": rate}


def report(r: dict) -> None:
    a, b = r["all_fast"], r["one_slow"]
    ratio = b["fast_ms"]["p50"] / a["fast_ms"]["p50"]
    print(f"\n  one slow account (venue 200 ms for {SLOW}, every 10th order), lanes={r['lanes'] or 'default'}, {r['rate']:.0f} orders/s")
    print(f"    all fast:  fast accounts p50 {a['fast_ms']['p50']:7.2f} ms  p99 {a['fast_ms']['p99']:7.2f} ms   verdicts {a['verdicts']}")
    print(f"    one slow:  fast accounts p50 {b['fast_ms']['p50']:7.2f} ms  p99 {b['fast_ms']['p99']:7.2f} ms;"
          f" slow account p50 {b['slow_ms']['p50']:7.1f} ms   verdicts {b['verdicts']}")  # fmt: skip
    print(f"    fast p50 one-slow / all-fast = {ratio:.2f}x (target <= 2x: {'met' if ratio <= 2 else 'MISSED'});"
          f" p99 {b['fast_ms']['p99'] / a['fast_ms']['p99']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--slow-every", type=int, default=10)
    parser.add_argument("--lanes", type=int, action="append", help="WOJAK_ENGINE_LANES (repeat to compare)")
    args = parser.parse_args()
    for lanes in args.lanes or [None]:
        report(run(args.rate, args.seconds, args.accounts, args.slow_every, lanes))


def maybe_run(sections: list[str], args: argparse.Namespace, results: dict) -> None:
    if "lanes" in sections:
        r = run(200, 6, 50, 10, None)
        results["lanes"] = r
        report(r)


if __name__ == "__main__":
    main()
