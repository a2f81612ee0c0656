"""The sandbox handler run in the engine's own process: the default venue for `wojak dev`."""

from __future__ import annotations

import asyncio
from typing import Any

from wojak.engine.venue._base import VenueError, VenueReport
from wojak.engine.venue.sandbox import Sandbox, SandboxConfig


class InProcessSandboxVenue:
    def __init__(self, config: SandboxConfig) -> None:
        self.sandbox = Sandbox(config)
        self.latency = float(config.latency_ms) / 1000

    async def _delay(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)

    def _call(self, action: str, orders: list[dict[str, Any]]) -> list[VenueReport]:
        answer = self.sandbox.handle({"action": action, "orders": orders})
        if "error" in answer:
            raise VenueError(answer["error"])
        return [VenueReport.from_dict(r) for r in answer["reports"]]

    async def execute(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        await self._delay()
        return self._call("execute", orders)

    async def lookup(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return self._call("lookup", orders)

    async def cancel(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return self._call("cancel", orders)

    async def close(self) -> None:
        return None
