"""Process-level helpers shared by every entry point (engine and sidecars alike)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Awaitable


def run(coro: Awaitable[Any]) -> Any:
    """Run on uvloop when it is installed (it is with ``uvicorn[standard]``)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr at ``WOJAK_LOG_LEVEL`` (default INFO, DEBUG with ``-v``)."""
    level = os.environ.get("WOJAK_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def fail(message: str) -> int:
    """Say what went wrong on one line (``wojak: ...``); the exit status of a refused start."""
    print(f"wojak: {message}", file=sys.stderr)
    return 2
