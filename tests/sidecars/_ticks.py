"""A `wojak sidecar <broker>` process with WOJAK_SIDECAR_CARRIES=ticks (and no
WOJAK_SIDECAR_ACCOUNTS: a ticks source trades nothing): two collectors' copies of the same
ticks, each sequence used once by the engine; its /metrics count the outcomes."""

from __future__ import annotations

import re
from typing import Awaitable, Callable

from wojak.sidecars.testing.contract import ProcessSidecar, _get, _last_ticks, eventually, free_port, ledger, tick

SYMBOLS, LAST = ("NIFTY-FUT", "BANKNIFTY-FUT", "ES-FUT"), 200


async def run_ticks_process(cli: str, engine, env: dict[str, str], publish: Callable[[list[bytes]], Awaitable[None]],
                            pending: Callable[[], Awaitable[int]]) -> dict[str, float]:
    unique = [tick(s, seq) for seq in range(1, LAST + 1) for s in SYMBOLS]
    await publish([body for t in unique for body in (t, t)])  # collector A's copy, then B's
    port = free_port()
    env = {**env, "WOJAK_ENGINE_SOCKET": str(engine.socket), "WOJAK_SIDECAR_HEALTH_PORT": str(port),
           "WOJAK_SIDECAR_CARRIES": "ticks", "WOJAK_LOG_LEVEL": "WARNING"}
    env.pop("WOJAK_SIDECAR_ACCOUNTS", None)
    sidecar = ProcessSidecar(cli, env, engine.data_dir / "sidecar-ticks.log")
    try:
        await eventually(lambda: _is_zero(pending), 120, "every tick settled and its position moved past it")
        text = _get(f"http://127.0.0.1:{port}/metrics")[1]
        counts = {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^wojak_sidecar_messages_total\{[^}]*verdict="(tick_\w+)"[^}]*\} (\S+)$', text, re.M)}
        assert await sidecar.terminate(30) == 0, sidecar.log_tail()
    finally:
        if sidecar.alive():
            await sidecar.kill()
    assert counts.get("tick_applied") == len(unique) and counts.get("tick_duplicate") == len(unique), counts
    assert _last_ticks(engine) == {s: (LAST, f"{24000 + LAST}.5") for s in SYMBOLS}
    assert ledger(engine) == {}
    return counts


async def _is_zero(pending: Callable[[], Awaitable[int]]) -> bool:
    return await pending() == 0
