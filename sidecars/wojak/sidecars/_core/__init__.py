"""What every sidecar shares: the engine client, the source-message contract, the runner,
and the health and metrics endpoints."""

from typing import Any

from wojak.engine.protocol.client import EngineClient
from wojak.sidecars._core.source import AlreadySettled, Source, SourceMessage

__all__ = ["AlreadySettled", "EngineClient", "Runner", "RunnerConfig", "Source", "SourceMessage", "serve_sidecar"]

_LAZY = frozenset({"Runner", "RunnerConfig", "serve_sidecar"})


def __getattr__(name: str) -> Any:
    # The runner pulls in FastAPI/uvicorn for the health server: import it only when asked,
    # so `wojak engine ping` (a liveness probe) stays light.
    if name in _LAZY:
        from wojak.sidecars._core import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
