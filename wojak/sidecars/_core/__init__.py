"""What every sidecar shares: the engine client, the source-message contract, the runner,
and the health and metrics endpoints."""

from wojak.sidecars._core.client import EngineClient
from wojak.sidecars._core.runner import Runner, RunnerConfig, serve_sidecar
from wojak.sidecars._core.source import AlreadySettled, Source, SourceMessage

__all__ = ["AlreadySettled", "EngineClient", "Runner", "RunnerConfig", "Source", "SourceMessage", "serve_sidecar"]
