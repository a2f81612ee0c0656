"""The engine client: a DEALER on the engine's IPC socket.

Requests are correlated by ``request_id``; at most ``window`` are in flight. No reply
within the deadline, or no engine connected, is answered locally as ``retry``, so a
caller never waits forever and never mistakes silence for success.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

import zmq

from wojak.engine.protocol import (
    LoopSocket,
    MessageType,
    Principal,
    ProtocolError,
    Verdict,
    check_socket_file,
    decode_frames,
    encode_frames,
    open_socket_dir,
)

log = logging.getLogger(__name__)


def _retry(reason: str, retry_after: float = 1.0) -> dict[str, Any]:
    return {"verdict": Verdict.RETRY.value, "reason": reason, "retry_after": retry_after}


def check_engine_socket(endpoint: str) -> None:
    """Refuse (``SocketDirError``) an engine socket whose directory or file is not this user's
    own: a sidecar checks before it connects, so it never talks to another user's listener."""
    if endpoint.startswith("ipc://") or "://" not in endpoint:
        path = Path(endpoint.removeprefix("ipc://"))
        dir_fd = open_socket_dir(path.parent, create=True, tighten=False)
        try:
            check_socket_file(dir_fd, path.name, path.parent)
        finally:
            os.close(dir_fd)


class EngineClient:
    def __init__(self, socket_path: str, *, deadline: float = 5.0, window: int = 1024) -> None:
        self.endpoint = socket_path if socket_path.startswith("ipc://") else f"ipc://{socket_path}"
        self.deadline = deadline
        self._window = asyncio.Semaphore(window)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ctx: zmq.Context | None = None
        self._sock: LoopSocket | None = None
        self._monitor: LoopSocket | None = None

    async def __aenter__(self) -> "EngineClient":
        self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Replies larger than this disconnect the engine inside ZMQ (a list of orders is the
    # largest legitimate one); the engine's own inbound limit is far smaller.
    max_reply_bytes = 4 * 1024 * 1024

    def connect(self) -> None:
        """Check the socket's directory, then connect (the engine may come up later).

        The directory must be a real directory (not a symlink) of this user, not writable by
        others, and a socket already in it must be ours: the engine runs as the same user as
        its sidecars, so anything else is another user's listener and is refused
        (``SocketDirError``, naming WOJAK_ENGINE_SOCKET) before a single byte is sent. A
        missing directory is created (0700), so nobody else can put one there meanwhile."""
        check_engine_socket(self.endpoint)
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_reply_bytes)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for an engine that is not there
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        # the engine's connection going away means every request in flight is lost with it:
        # answer them retry at once instead of letting each wait out its deadline
        self._monitor = LoopSocket(sock.get_monitor_socket(zmq.EVENT_DISCONNECTED), self._on_event)
        self._monitor.start()
        sock.connect(self.endpoint)
        self._sock = LoopSocket(sock, self._on_reply)
        self._sock.start()

    async def close(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(_retry("client_closed"))
        self._pending.clear()
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor.sock.close(linger=0)
            self._monitor = None
        if self._sock is not None:
            self._sock.sock.disable_monitor()
            self._sock.stop()
            self._sock.sock.close(linger=0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            _, body = decode_frames(frames)
        except ProtocolError as exc:
            log.error("engine sent a malformed reply: %s", exc)
            return
        fut = self._pending.pop(body.get("request_id"), None)  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(body)

    def _on_event(self, frames: list[bytes]) -> None:
        if not self._pending:
            return
        log.warning("the engine disconnected with %d request(s) in flight: answering them retry", len(self._pending))
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_result(_retry("engine_disconnected", 0.05))

    def _expire(self, request_id: int) -> None:
        fut = self._pending.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(_retry("engine_timeout"))

    async def request(self, kind: MessageType, body: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """Send one request; the engine's reply, or a local ``retry`` reply."""
        if self._sock is None:
            raise RuntimeError("EngineClient is not connected: use `async with EngineClient(...)`")
        async with self._window:
            request_id = next(self._ids)
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending[request_id] = fut
            body["request_id"] = request_id
            deadline = self.deadline if deadline is None else deadline
            # the engine never starts work the caller has already given up on
            body["expires_at"] = time.time() + deadline
            frames = encode_frames(kind, body)
            try:
                self._sock.send(frames)
            except zmq.Again:  # no engine connected (yet): wait for one within the deadline
                if not await self._sock.send_within(frames, deadline):
                    self._pending.pop(request_id, None)
                    return _retry("engine_unavailable")
            timer = loop.call_later(deadline, self._expire, request_id)
            try:
                return await fut
            finally:
                timer.cancel()
                self._pending.pop(request_id, None)

    # Every order, query and tick carries the principal that sent it; the engine checks it again.

    async def submit_order(self, order: dict[str, Any], principal: Principal, deadline: float | None = None) -> dict[str, Any]:
        return await self.request(MessageType.SUBMIT_ORDER, {"order": order, "principal": principal.to_wire()}, deadline)

    async def cancel_order(self, account: str, client_order_id: str, principal: Principal) -> dict[str, Any]:
        body = {"account": account, "client_order_id": client_order_id, "principal": principal.to_wire()}
        return await self.request(MessageType.CANCEL_ORDER, body)

    async def get_order(self, account: str, client_order_id: str, principal: Principal) -> dict[str, Any]:
        body = {"account": account, "client_order_id": client_order_id, "principal": principal.to_wire()}
        return await self.request(MessageType.GET_ORDER, body)

    async def list_orders(
        self, principal: Principal, account: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> dict[str, Any]:
        """``{"verdict": "ok", "orders": [...], "next_cursor": str | None}``: the principal's orders, newest first."""
        body: dict[str, Any] = {"principal": principal.to_wire(), "limit": limit}
        if account is not None:
            body["account"] = account
        if cursor is not None:
            body["cursor"] = cursor
        return await self.request(MessageType.LIST_ORDERS, body)

    async def tick(self, tick: dict[str, Any], principal: Principal) -> dict[str, Any]:
        return await self.request(MessageType.TICK, {"tick": tick, "principal": principal.to_wire()})

    async def audit(self, event: str, actor: str, detail: dict[str, Any]) -> dict[str, Any]:
        """Append a sidecar's own event (e.g. its keys file loaded or refused) to the engine's audit log."""
        return await self.request(MessageType.AUDIT, {"event": event, "actor": actor, "detail": detail})

    async def ping(self, deadline: float = 1.0) -> bool:
        reply = await self.request(MessageType.PING, {}, deadline)
        return reply.get("verdict") == Verdict.OK.value

    async def metrics_text(self, deadline: float = 2.0) -> str | None:
        reply = await self.request(MessageType.METRICS, {}, deadline)
        return reply.get("text") if reply.get("verdict") == Verdict.OK.value else None
