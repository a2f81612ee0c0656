"""What the outage, rebalance and readiness tests of every broker ask of a sidecar process and
its engine: `/readyz`, a counter's total from `/metrics`, and an engine whose venue is slow
enough that a stream is still running when the test acts on it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from wojak.engine.protocol import MessageType
from wojak.sidecars.testing.contract import TICK, _get


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """(status, body) of /readyz; (0, {}) while the health server is not listening."""
    try:
        return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
    except OSError:
        return 0, {}


async def ready(port: int) -> bool:
    return (await readyz(port))[0] == 200


def metric_total(port: int, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series of /metrics whose labels include ``labels``; -1 while
    the health server is not listening."""
    try:
        text = _get(f"http://127.0.0.1:{port}/metrics")[1]
    except OSError:
        return -1.0
    total = 0.0
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text if isinstance(text, str) else "", re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def engine_with_a_tick(engine_factory: Any, **env: str) -> Any:
    """A real engine that fills every order (its venue settings overridden by ``env``), with the
    tick the orders are priced from."""
    proc = engine_factory(**{"WOJAK_SANDBOX_FILL_PROBABILITY": "1", **env})
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


def engine_with_a_slow_venue(engine_factory: Any) -> Any:
    """A real engine whose venue takes 25 ms a batch (every order filled): the stream is still
    running when a test stops the broker or kills a replica."""
    return engine_with_a_tick(engine_factory, WOJAK_SANDBOX_LATENCY_MS="25")
