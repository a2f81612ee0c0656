"""The engine's only listener: one ZMQ ROUTER on an ``ipc://`` path in a 0700 directory."""

from wojak.engine.transport._server import (
    DEFAULT_MAX_FRAME_BYTES,
    EngineAlreadyRunning,
    EngineServer,
    SocketDirError,
    prepare_socket,
)

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "EngineAlreadyRunning", "EngineServer", "SocketDirError", "prepare_socket"]
