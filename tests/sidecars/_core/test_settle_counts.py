"""``SettleFailed(counts=False)``: a settlement that failed because of the broker (unreachable, a
timeout), not the message, is never counted toward giving the message up; ``counts=True`` (the
default) is, and after ``settle_attempts`` of them the message is given up."""

from __future__ import annotations

from typing import Any

from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.runner import Runner
from wojak.sidecars._core.source import SettleFailed, Source, SourceMessage


class Message(SourceMessage):
    def __init__(self, failures: list[bool]) -> None:
        super().__init__(b"{not json", ("q", "1"))
        self.failures = failures  # one entry per dead letter attempt: raise SettleFailed(counts=entry)

    async def _ack(self) -> None: ...

    async def _requeue(self, delay: float) -> None: ...

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        if self.failures:
            raise SettleFailed("broker away", counts=self.failures.pop(0))

    async def _give_up(self, reason: str, detail: Any) -> None: ...


class NoSource(Source):
    name = "kit"

    def messages(self):  # pragma: no cover
        raise NotImplementedError

    async def stop_consuming(self) -> None: ...


def runner() -> Runner:
    return Runner(NoSource(), None, SidecarMetrics("kit"), settle_attempts=3)  # type: ignore[arg-type]


async def deliver(r: Runner, failures: list[bool], times: int) -> list[str | None]:
    """The same message delivered ``times`` times (a broker redelivers what was not settled)."""
    settled = []
    for _ in range(times):
        message = Message(failures)
        await r.handle(message)
        settled.append(message.settled.value if message.settled else None)
    return settled


async def test_failures_that_are_the_brokers_are_never_counted():
    r = runner()
    failures = [False] * 6
    assert await deliver(r, failures, 7) == ["dead_letter"] * 7
    assert not failures, "six failed dead letters, then the seventh went through: never given up"
    assert r.metrics.registry.get_sample_value("wojak_sidecar_messages_total", {"source": "kit", "verdict": "unsettleable"}) is None


async def test_failures_that_are_the_messages_are_counted_and_it_is_given_up():
    r = runner()
    assert await deliver(r, [True] * 6, 4) == ["dead_letter"] * 3 + ["give_up"]
    assert r.metrics.registry.get_sample_value("wojak_sidecar_messages_total", {"source": "kit", "verdict": "unsettleable"}) == 1
