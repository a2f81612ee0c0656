"""The engine client: a DEALER on the engine's IPC socket.

Requests are correlated by ``request_id``; at most ``window`` are in flight. No reply
within the deadline, or no engine connected, is answered locally as ``retry``, so a
caller never waits forever and never mistakes silence for success.

Orders submitted together are sent together: ``submit_order`` calls made in the same turn
of the event loop (or within ``linger`` seconds), for the same principal and deadline, go
as one ``submit_orders`` request of up to ``max_batch`` orders, and each caller gets its own
order's reply (the engine answers in one frame per batch that decided some of them). One
order alone goes as a plain ``submit_order``.
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
    MAX_ORDERS_PER_REQUEST,
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


def _resolve(futures: list[asyncio.Future[dict[str, Any]]], reply: dict[str, Any]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(dict(reply))


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


class _Forming:
    """Orders of one principal and deadline waiting for this turn of the loop to end."""

    __slots__ = ("principal", "deadline", "orders", "futures")

    def __init__(self, principal: Principal, deadline: float) -> None:
        self.principal = principal
        self.deadline = deadline
        self.orders: list[dict[str, Any]] = []
        self.futures: list[asyncio.Future[dict[str, Any]]] = []


class _Sent:
    """A ``submit_orders`` request in flight: its orders' futures, answered part by part."""

    __slots__ = ("futures", "open", "timer")

    def __init__(self, futures: list[asyncio.Future[dict[str, Any]]]) -> None:
        self.futures = futures
        self.open = len(futures)
        self.timer: asyncio.TimerHandle | None = None


class EngineClient:
    def __init__(
        self,
        socket_path: str,
        *,
        deadline: float = 5.0,
        window: int = 1024,
        max_batch: int = 64,
        linger: float = 0.0,
        max_request_bytes: int = 32 * 1024,
    ) -> None:
        if not 1 <= max_batch <= MAX_ORDERS_PER_REQUEST:
            raise ValueError(f"max_batch must be from 1 to {MAX_ORDERS_PER_REQUEST}")
        self.endpoint = socket_path if socket_path.startswith("ipc://") else f"ipc://{socket_path}"
        self.deadline = deadline
        self.max_batch = max_batch
        self.linger = linger
        # below the engine's inbound frame limit (WOJAK_ENGINE_MAX_FRAME_BYTES, 64 KiB by default):
        # a larger request is split, never sent (the engine would drop the connection)
        self.max_request_bytes = max_request_bytes
        self._window = asyncio.Semaphore(window)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._sent: dict[int, _Sent] = {}
        self._forming: dict[tuple[Principal, float], _Forming] = {}
        self._flush_handle: asyncio.Handle | None = None
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
        self._answer_all(_retry("client_closed"))
        for forming in self._forming.values():
            _resolve(forming.futures, _retry("client_closed"))
        self._forming.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
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
        request_id = body.get("request_id")
        sent = self._sent.get(request_id)  # type: ignore[arg-type]
        if sent is not None:
            self._on_parts(request_id, sent, body)  # type: ignore[arg-type]
            return
        fut = self._pending.pop(request_id, None)  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(body)

    def _on_parts(self, request_id: int, sent: _Sent, body: dict[str, Any]) -> None:
        parts = body.get("parts")
        if not isinstance(parts, list):  # one order's plain reply, or a refusal of the whole request: theirs
            _resolve(sent.futures, body)
            parts = []
            sent.open = 0
        futures = sent.futures
        for part in parts:
            if isinstance(part, list) and len(part) == 2 and type(part[0]) is int and 0 <= part[0] < len(futures):
                fut = futures[part[0]]
                if not fut.done():
                    fut.set_result(part[1])
                    sent.open -= 1
                elif fut.cancelled():
                    sent.open -= 1
        if sent.open <= 0 or all(f.done() for f in futures):
            self._sent.pop(request_id, None)
            if sent.timer is not None:
                sent.timer.cancel()

    def _answer_all(self, reply: dict[str, Any]) -> None:
        sent, self._sent = self._sent, {}
        for one in sent.values():
            if one.timer is not None:
                one.timer.cancel()
            _resolve(one.futures, reply)

    def _on_event(self, frames: list[bytes]) -> None:
        if not self._pending and not self._sent:
            return
        log.warning(
            "the engine disconnected with %d request(s) in flight: answering them retry", len(self._pending) + len(self._sent)
        )
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_result(_retry("engine_disconnected", 0.05))
        self._answer_all(_retry("engine_disconnected", 0.05))

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
        """The engine's reply to ``order``; sent with the other orders submitted in this turn of the loop."""
        if self._sock is None:
            raise RuntimeError("EngineClient is not connected: use `async with EngineClient(...)`")
        deadline = self.deadline if deadline is None else deadline
        async with self._window:
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            key = (principal, deadline)
            forming = self._forming.get(key)
            if forming is None:
                forming = self._forming[key] = _Forming(principal, deadline)
            forming.orders.append(order)
            forming.futures.append(fut)
            if len(forming.orders) >= self.max_batch:
                del self._forming[key]
                self._send_orders(forming.principal, forming.deadline, forming.orders, forming.futures)
            elif self._flush_handle is None:
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(self.linger, self._flush) if self.linger else loop.call_soon(self._flush)
            return await fut

    def _flush(self) -> None:
        self._flush_handle = None
        forming, self._forming = self._forming, {}
        for batch in forming.values():
            self._send_orders(batch.principal, batch.deadline, batch.orders, batch.futures)

    def _send_orders(
        self,
        principal: Principal,
        deadline: float,
        orders: list[dict[str, Any]],
        futures: list[asyncio.Future[dict[str, Any]]],
    ) -> None:
        """Send ``orders`` as one request (halved until it fits ``max_request_bytes``)."""
        request_id = next(self._ids)
        expires_at = time.time() + deadline  # the engine never starts work the caller has already given up on
        if len(orders) == 1:
            kind = MessageType.SUBMIT_ORDER
            body = {"order": orders[0], "principal": principal.to_wire(), "request_id": request_id, "expires_at": expires_at}
        else:
            kind = MessageType.SUBMIT_ORDERS
            body = {"orders": orders, "principal": principal.to_wire(), "request_id": request_id, "expires_at": expires_at}
        frames = encode_frames(kind, body)
        if len(orders) > 1 and len(frames[2]) > self.max_request_bytes:
            half = len(orders) // 2
            self._send_orders(principal, deadline, orders[:half], futures[:half])
            self._send_orders(principal, deadline, orders[half:], futures[half:])
            return
        loop = asyncio.get_running_loop()
        sent = self._sent[request_id] = _Sent(futures)  # one order alone is answered by a plain reply
        sent.timer = loop.call_later(deadline, self._expire_orders, request_id)
        assert self._sock is not None
        try:
            self._sock.send(frames)
        except zmq.Again:  # no engine connected (yet): wait for one within the deadline
            loop.create_task(self._send_later(request_id, frames, deadline, sent))

    async def _send_later(self, request_id: int, frames: list[bytes], deadline: float, sent: _Sent) -> None:
        if self._sock is not None and await self._sock.send_within(frames, deadline):
            return
        self._sent.pop(request_id, None)
        if sent.timer is not None:
            sent.timer.cancel()
        _resolve(sent.futures, _retry("engine_unavailable"))

    def _expire_orders(self, request_id: int) -> None:
        sent = self._sent.pop(request_id, None)
        if sent is not None:
            _resolve(sent.futures, _retry("engine_timeout"))

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
