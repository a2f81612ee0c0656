"""The sidecar kit's shared pieces, in process: the settings base class, ``BrokerSource`` (bounded
settling calls, connect with backoff, pauses that resume when the sidecar stops) and the settled
state as a ``Settlement``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import pytest
from pydantic import ValidationError

from wojak.engine.protocol import Settlement
from wojak.sidecars._core.settings import BrokerSidecarSettings
from wojak.sidecars._core.source import AlreadySettled, BrokerSource, SettleFailed, SourceMessage


class Settings(BrokerSidecarSettings):
    pass


def test_the_shared_settings_reach_the_runner_and_are_frozen(monkeypatch):
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk-1, desk-2-*")
    monkeypatch.setenv("WOJAK_SIDECAR_BACKOFF_BASE", "0.5")
    monkeypatch.setenv("WOJAK_SIDECAR_BACKOFF_MAX", "12")
    monkeypatch.setenv("WOJAK_SIDECAR_DRAIN_SECONDS", "7")
    monkeypatch.setenv("WOJAK_SIDECAR_HEALTH_PORT", "0")
    settings = Settings()
    runner = settings.runner_config(concurrency=9)
    assert (runner.backoff_base, runner.backoff_max, runner.drain_seconds) == (0.5, 12.0, 7.0)
    assert runner.accounts == ("desk-1", "desk-2-*") and runner.concurrency == 9 and runner.health_port is None
    with pytest.raises(ValidationError, match="frozen"):
        settings.backoff_base = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("value", ["0", "-1", "61"])
def test_an_out_of_range_backoff_base_is_refused(monkeypatch, value):
    monkeypatch.setenv("WOJAK_SIDECAR_BACKOFF_BASE", value)
    with pytest.raises(ValidationError, match="WOJAK_SIDECAR_BACKOFF_BASE"):
        Settings()


class Message(SourceMessage):
    async def _ack(self) -> None: ...

    async def _requeue(self, delay: float) -> None: ...

    async def _dead_letter(self, reason: str, detail: Any) -> None: ...


async def test_the_settled_state_is_a_settlement_and_settles_once():
    message = Message(b"{}", ("q", "1"))
    await message.dead_letter("invalid")
    assert message.settled is Settlement.DEAD_LETTER and message.settled == "dead_letter"
    with pytest.raises(AlreadySettled, match=r"already settled \(dead_letter\); refusing to ack"):
        await message.ack()
    given_up = Message(b"{}", ("q", "2"))
    await given_up.give_up("unsettleable")
    assert given_up.settled is Settlement.GIVE_UP


class Source(BrokerSource):
    name = "kit"

    def messages(self) -> AsyncIterator[SourceMessage]:  # pragma: no cover
        raise NotImplementedError

    async def stop_consuming(self) -> None:
        self.begin_stopping()


async def test_settle_call_is_bounded_and_says_why_it_failed():
    source = Source(settle_timeout=0.05)
    await source.settle_call(asyncio.sleep(0), "ack", ("q", "1"))
    started = time.monotonic()
    with pytest.raises(SettleFailed, match=r"ack failed \(no answer within 0.1s\)"):
        await source.settle_call(asyncio.sleep(10), "ack", ("q", "1"))
    assert time.monotonic() - started < 1

    async def refused() -> None:
        raise ConnectionError("channel closed")

    with pytest.raises(SettleFailed, match=r"nack failed \(channel closed\)"):
        await source.settle_call(refused(), "nack", ("q", "1"))
    await source.quietly(refused(), "nack", ("q", "1"))  # logged only


async def test_a_pause_resumes_at_once_when_the_sidecar_stops():
    source = Source()
    paused = asyncio.create_task(source.pause(30))
    await asyncio.sleep(0.05)
    assert not paused.done()
    started = time.monotonic()
    await source.stop_consuming()
    await asyncio.wait_for(paused, 1)
    assert time.monotonic() - started < 0.5 and source.stopping
    assert source.begin_stopping() is False  # once


async def test_connect_with_backoff_retries_doubling_up_to_the_cap_and_gives_up_when_stopping():
    source = Source()
    attempts: list[float] = []

    async def connect() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise ConnectionRefusedError("not yet")
        return "connected"

    assert await source.connect_with_backoff(connect, "broker", first=0.02, cap=0.05) == "connected"
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert len(gaps) == 3 and gaps[0] >= 0.02 and gaps[1] >= 0.04 and 0.05 <= gaps[2] < 0.5, gaps

    async def never() -> str:
        raise ConnectionRefusedError("down")

    trying = asyncio.create_task(source.connect_with_backoff(never, "broker", first=10))
    await asyncio.sleep(0.05)
    await source.stop_consuming()
    assert await asyncio.wait_for(trying, 1) is None

    async def broken() -> str:
        raise ValueError("not a connection error")

    with pytest.raises(ValueError):  # only the errors it is told to retry are retried
        await Source().connect_with_backoff(broken, "broker")
