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
        self.account_latency = {account: float(ms) / 1000 for account, ms in config.account_latency_ms}

    async def _delay(self, orders: list[dict[str, Any]]) -> None:
        latency = self.latency
        if self.account_latency:  # the call waits for its slowest account
            latency = max([latency, *(self.account_latency.get(o.get("account"), 0.0) for o in orders)])  # type: ignore[arg-type]
        if latency:
            await asyncio.sleep(latency)

    def _call(self, action: str, orders: list[dict[str, Any]]) -> list[VenueReport]:
        answer = self.sandbox.handle({"action": action, "orders": orders})
        if "error" in answer:
            raise VenueError(answer["error"])
        return [VenueReport.from_dict(r) for r in answer["reports"]]

    async def execute(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        await self._delay(orders)
        return self._call("execute", orders)

    async def lookup(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return self._call("lookup", orders)

    async def cancel(self, orders: list[dict[str, Any]]) -> list[VenueReport]:
        return self._call("cancel", orders)

    async def close(self) -> None:
        return None
