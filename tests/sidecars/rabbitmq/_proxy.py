"""A TCP proxy in front of the real RabbitMQ that can stall or cut the sidecar's connection.

``stall()`` stops forwarding what the client sends (and stops reading it: the client's socket
buffers fill and its writes block), while the broker's deliveries still reach the client:
a broker that stopped taking acks, as over a half-open connection or a wedged network path.
``cut()`` aborts every proxied connection (the client sees its connection drop), ``resume()``
forwards again. New connections are accepted and forwarded normally unless stalled.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit, urlunsplit


class StallableProxy:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._parts = parts
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.AbstractServer | None = None
        self._connections: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.held_up = 0  # bytes from the client not forwarded while stalled

    @property
    def proxied_url(self) -> str:
        netloc = self._parts.netloc.rsplit("@", 1)
        creds = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit(self._parts._replace(netloc=f"{creds}127.0.0.1:{self.port}"))

    async def start(self) -> "StallableProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        sock = client_w.get_extra_info("socket")
        if sock is not None:  # a small receive buffer: a stall is felt by the client sooner
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        try:
            broker_r, broker_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._connections.append((client_w, broker_w))
        for task in (self._pipe(client_r, broker_w, upstream=True), self._pipe(broker_r, client_w, upstream=False)):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool) -> None:
        try:
            while True:
                if upstream and not self._open.is_set():
                    await self._open.wait()  # stalled: nothing more is read from the client
                data = await src.read(65536)
                if not data:
                    break
                if upstream and not self._open.is_set():
                    self.held_up += len(data)
                    await self._open.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()

    def stall(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def cut(self) -> None:
        """Drop every proxied connection at once (both sides see a reset)."""
        for client_w, broker_w in self._connections:
            client_w.transport.abort()
            broker_w.transport.abort()
        self._connections.clear()

    async def close(self) -> None:
        self.resume()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
