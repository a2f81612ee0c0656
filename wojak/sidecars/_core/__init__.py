"""What every sidecar shares: the engine client, the source-message contract, the runner,
and the health and metrics endpoints."""

from wojak.sidecars._core.client import EngineClient
from wojak.sidecars._core.source import AlreadySettled, Source, SourceMessage

__all__ = ["AlreadySettled", "EngineClient", "Source", "SourceMessage"]
