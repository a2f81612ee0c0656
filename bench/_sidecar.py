"""What every broker's sidecar benchmark does around its broker: start the engine and give it a
tick, read the sidecar's /metrics, wait for its first ack or for all its acks, and report the
CPU per order. The broker's own part (preloading, the bare consumer, how the end is seen) stays
in its bench file."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from bench._common import cpu_seconds, wait_until

TICK = {"symbol": "NIFTY-FUT", "bid": "23999", "ask": "24001", "last": "24000"}


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return r.read().decode()


def counter(text: str, name: str, **labels: str) -> float:
    """The sum of the counter ``name`` over the series whose labels include ``labels``."""
    total = 0.0
    for m in re.finditer(rf"^{name}_total\{{([^}}]*)\}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def verdicts(text: str, source: str) -> dict[str, int]:
    """The sidecar's messages by verdict."""
    pattern = rf'^wojak_sidecar_messages_total\{{source="{re.escape(source)}",verdict="([^"]+)"\}} (\S+)$'
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(pattern, text, re.M)}


async def tick(sock: Path) -> None:
    """The tick risk prices the orders from, sent as a principal that may write ticks (the
    engine refuses a tick without one: principal_missing)."""
    from wojak.engine.protocol import MessageType, Principal, Scope
    from wojak.engine.protocol.client import EngineClient

    principal = Principal.of("bench-feed", [], [Scope.TICKS_WRITE]).to_wire()
    async with EngineClient(str(sock)) as client:
        reply = await client.request(MessageType.TICK, {"tick": TICK, "principal": principal}, 5.0)
    if reply.get("verdict") != "ok":
        raise RuntimeError(f"tick refused: {reply}")


def engine_ping(sock: Path) -> bool:
    from wojak.engine.protocol import MessageType
    from wojak.engine.protocol.client import EngineClient

    async def ping() -> bool:
        async with EngineClient(str(sock)) as client:
            return (await client.request(MessageType.PING, {}, 0.3)).get("verdict") == "ok"

    return asyncio.run(ping())


async def engine_ready(sock: Path) -> None:
    """The engine answers (within 30 s) and has the tick the orders are priced from."""
    await asyncio.to_thread(wait_until, lambda: engine_ping(sock), 30.0, "engine")
    await tick(sock)


def check(proc: subprocess.Popen[bytes], tmp: Path, t0: float, what: str, limit: float) -> None:
    """Raises (with the sidecar's log) if the sidecar exited or ``what`` took over ``limit`` s."""
    if proc.poll() is not None:
        raise RuntimeError(f"sidecar exited {proc.returncode}:\n" + (tmp / "sidecar.log").read_text()[-3000:])
    if time.perf_counter() - t0 > limit:
        raise RuntimeError(f"no {what} after {limit:.0f} s:\n" + (tmp / "sidecar.log").read_text()[-3000:])


async def acks(port: int) -> tuple[float, str]:
    """(acks so far, the /metrics text); (0, "") while the health server is not listening."""
    try:
        text = await asyncio.to_thread(metrics_text, port)
    except OSError:
        return 0.0, ""
    return counter(text, "wojak_sidecar_settlements", settlement="ack"), text


async def first_ack(sidecar: subprocess.Popen[bytes], port: int, tmp: Path, limit: float = 60.0) -> float:
    """Waits for the sidecar's first ack; returns when the wait began (perf_counter)."""
    spawned = time.perf_counter()
    while (await acks(port))[0] <= 0:
        check(sidecar, tmp, spawned, "first ack", limit)
        await asyncio.sleep(0.02)
    return spawned


async def until_acked(
    sidecar: subprocess.Popen[bytes],
    engine: subprocess.Popen[bytes],
    port: int,
    n: int,
    tmp: Path,
    *,
    less_duplicates: bool = False,
    on_first: Callable[[], Any] | None = None,
    limit: float = 900.0,
) -> dict[str, Any]:
    """Polls /metrics until ``n`` orders are acked (``less_duplicates``: acks less the duplicates,
    for a broker that redelivers: a redelivery is acked again). The clock and the CPU start at
    the first ack; ``on_first`` is called then. Returns t0, t1, cpu0, cpu, duplicates, text."""
    t0: float | None = None
    cpu0: dict[str, float] = {}
    acked = duplicates = 0.0
    text = ""
    deadline = time.monotonic() + limit
    while acked < n:
        if sidecar.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{acked:.0f} of {n} acked:\n" + (tmp / "sidecar.log").read_text()[-3000:])
        acked, text = await acks(port)
        if less_duplicates:
            duplicates = counter(text, "wojak_sidecar_messages", verdict="duplicate")
            acked -= duplicates
        if acked > 0 and t0 is None:
            t0 = time.perf_counter()
            cpu0 = {"sidecar": cpu_seconds(sidecar.pid), "engine": cpu_seconds(engine.pid)}
            if on_first is not None:
                on_first()
        await asyncio.sleep(0.02)
    t1 = time.perf_counter()
    cpu = {"sidecar": cpu_seconds(sidecar.pid), "engine": cpu_seconds(engine.pid)}
    assert t0 is not None
    return {"t0": t0, "t1": t1, "cpu0": cpu0, "cpu": cpu, "duplicates": duplicates, "text": text}


def per_order_us(cpu0: dict[str, float], cpu: dict[str, float], n: int) -> dict[str, float]:
    """CPU microseconds per order of each process, between two readings."""
    return {k: (cpu[k] - cpu0[k]) / n * 1e6 for k in cpu}


def cpu_text(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in result["cpu_us_per_order"].items())
