"""Process-level helpers shared by every entry point (engine and sidecars alike)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Awaitable, Callable


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


# Modules of an extra more specific than the command's own part (the engine's store and venue drivers).
_DRIVER_EXTRA = {"couchbase": "couchbase", "acouchbase": "couchbase", "boto3": "lambda", "botocore": "lambda"}


def run_command(func: Callable[[Any], Any], args: Any, extra: str) -> int:
    """Run a command; a third-party module it needs but this install lacks is one line naming
    the extra to install (``extra``: the command's part, e.g. ``engine``, ``rabbitmq``, ``dev``),
    not a traceback."""
    try:
        return int(func(args) or 0)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if not top or top == "wojak":
            raise
        needed = _DRIVER_EXTRA.get(top, extra)
        return fail(
            f"this needs {top}, which this install lacks: pip install 'wojak[{needed}]' (from a clone: pip install '.[{needed}]')"
        )
