"""Crash injection for the crash-safety tests: ``WOJAK_ENGINE_CRASH_AT=<point>[,<point>...]``
makes the engine SIGKILL itself the first time it reaches that point of the order path.

It is a test-only switch: it is armed only when ``WOJAK_TEST_FAULTS=1`` is set as well.
Without it the variable is ignored with a warning, so a stray setting in production can
never kill the engine. ``configure`` is called once at start-up (``run_engine``); until
then nothing is armed. Disarmed it costs one set lookup per batch.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Mapping

from wojak.errors import ConfigError

log = logging.getLogger(__name__)

POINTS = ("validated", "admitted", "executed", "recorded", "replied")
CRASH_ENV = "WOJAK_ENGINE_CRASH_AT"
TEST_SWITCH_ENV = "WOJAK_TEST_FAULTS"

_armed: frozenset[str] = frozenset()


def configure(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """Arm the crash points named in ``WOJAK_ENGINE_CRASH_AT`` if ``WOJAK_TEST_FAULTS=1``;
    returns what is armed. An unknown point (with the switch on) is a ``ValueError``."""
    global _armed
    env = os.environ if env is None else env
    wanted = frozenset(p.strip() for p in env.get(CRASH_ENV, "").split(",") if p.strip())
    _armed = frozenset()
    if not wanted:
        return _armed
    if env.get(TEST_SWITCH_ENV, "").strip() != "1":
        log.warning(
            "%s is set but IGNORED: crash injection is a test-only fault and needs %s=1 as well", CRASH_ENV, TEST_SWITCH_ENV
        )
        return _armed
    unknown = wanted - set(POINTS)
    if unknown:
        raise ConfigError(f"{CRASH_ENV}: unknown point(s) {sorted(unknown)}; use {', '.join(POINTS)}")
    log.warning("TEST FAULTS ARMED (%s=1): the engine will SIGKILL itself at %s", TEST_SWITCH_ENV, ", ".join(sorted(wanted)))
    _armed = wanted
    return _armed


def crash_point(name: str) -> None:
    if name in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
