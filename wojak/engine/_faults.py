"""Crash injection for the crash-safety tests: ``WOJAK_ENGINE_CRASH_AT=<point>`` makes the
engine SIGKILL itself the first time it reaches that point of the order path.
Unset (the default) it costs one set lookup per batch."""

from __future__ import annotations

import os
import signal

POINTS = ("validated", "admitted", "executed", "recorded", "replied")
_armed = frozenset(p for p in os.environ.get("WOJAK_ENGINE_CRASH_AT", "").split(",") if p)
unknown = _armed - set(POINTS)
if unknown:
    raise SystemExit(f"WOJAK_ENGINE_CRASH_AT: unknown point(s) {sorted(unknown)}; use {', '.join(POINTS)}")


def crash_point(name: str) -> None:
    if name in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
