"""The sidecar contract (wojak.sidecars.testing) against the in-memory broker and a real engine:
the whole suite, the SIGTERM drain and the stream scenario with kill -9 included, without a
broker. Every broker runs the same suite against its real broker (tests/sidecars/<broker>)."""

from __future__ import annotations

import uuid

import pytest

from wojak.sidecars.testing.contract import EngineUnderTest, InProcessSidecar, SidecarContract
from wojak.sidecars.testing.memory import DeadLetter, MemoryBroker, MemorySource


class TestMemory(SidecarContract):
    source_name = "memory"
    stream_orders = 2_000  # WOJAK_TEST_MEMORY_STREAM_ORDERS
    stream_in_flight = 64  # the runner's concurrency: what a crashed sidecar held unsettled

    @pytest.fixture(autouse=True)
    def broker(self) -> MemoryBroker:
        self.memory = MemoryBroker(f"memory.{uuid.uuid4().hex[:12]}")
        return self.memory

    def make_source(self) -> MemorySource:
        return MemorySource(self.memory)

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        await self.memory.publish(body, message_id)

    async def dead_letters(self) -> list[DeadLetter]:
        return self.memory.take_dead_letters()

    async def dead_letter_count(self) -> int:
        return len(self.memory.dead)

    async def pending_count(self) -> int:
        # with what a live consumer holds (through a requeue's backoff too): nothing is out of sight
        return self.memory.pending() + self.memory.unacked()

    pending_counts_unsettled = True

    def coordinates_for(self, message_id: str, body: bytes) -> tuple[str, str]:
        return (self.memory.queue, message_id)

    async def launch(self, engine: EngineUnderTest, env: dict[str, str], name: str) -> InProcessSidecar:
        source = self.make_source()
        return InProcessSidecar(source, {**env, "WOJAK_SIDECAR_CONCURRENCY": str(self.stream_in_flight)}, source.crash)
