"""Process-level helpers shared by every entry point (engine and sidecars alike)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable


def run(coro: Awaitable[Any]) -> Any:
    """Run on uvloop when it is installed (it is with ``uvicorn[standard]``)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]
