"""The engine's only listener: one ZMQ ROUTER on an ``ipc://`` path in a 0700 directory."""

from wojak.engine.transport._server import EngineAlreadyRunning, EngineServer, SocketDirError, prepare_socket

__all__ = ["EngineAlreadyRunning", "EngineServer", "SocketDirError", "prepare_socket"]
