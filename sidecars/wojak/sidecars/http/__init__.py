"""The HTTP source sidecar: ``POST /v1/orders`` in, the engine's verdict out."""

from wojak.sidecars.http.config import HttpSidecarSettings
from wojak.sidecars.http.source import create_app, serve

__all__ = ["HttpSidecarSettings", "create_app", "serve"]
