"""ROUTER server: drains the socket into batches, answers pings at once, never drops a reply.

In-flight requests are bounded (``max_inflight``): past it the engine answers ``retry``
(overloaded) instead of queueing without limit. Because of that bound the send high-water
mark can be unlimited, so the ROUTER never silently drops a reply; with ROUTER_MANDATORY
a reply to a peer that has gone raises and is counted (the peer resends after its deadline).
An inbound frame larger than ``max_frame_bytes`` (ZMQ_MAXMSGSIZE) disconnects its sender
inside ZMQ before it is read, so it is never decoded and never stalls the loop.

Lanes: up to ``lanes`` batches run at once, and an account is in at most one running batch.
A batch takes every queued request (in arrival order, up to ``max_batch``) whose account is
not in a running batch; the requests of a busy account wait in the queue, in order, for its
batch to end. So each account's requests are handled one batch after another, in order, as
before, while a batch waiting on the venue or the store no longer holds up other accounts.
When nothing yields (an inline store, an in-process venue) there is one batch at a time and
batches are as large as before.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable, Collection

import zmq

from wojak.engine._faults import crash_point
from wojak.engine.protocol import (
    MAX_ORDERS_PER_REQUEST,
    PROTOCOL_VERSION,
    LoopSocket,
    MessageType,
    ProtocolError,
    SocketDirError,
    Verdict,
    decode_frames,
    encode_body,
    fd_path,
    open_socket_dir,
)
from wojak.errors import WojakError

log = logging.getLogger(__name__)

_REPLY = MessageType.REPLY.value
_IMMEDIATE = frozenset({MessageType.PING, MessageType.METRICS})

DEFAULT_MAX_FRAME_BYTES = 64 * 1024  # WOJAK_ENGINE_MAX_FRAME_BYTES: an order is a few hundred bytes

HandleBatch = Callable[[list[tuple[MessageType, dict[str, Any]]]], Awaitable[list[dict[str, Any]]]]
HandleNow = Callable[[MessageType, dict[str, Any]], dict[str, Any]]
_ACCOUNT_QUERIES = frozenset({MessageType.CANCEL_ORDER, MessageType.GET_ORDER, MessageType.LIST_ORDERS})


def account_of(kind: MessageType, body: dict[str, Any]) -> str | None:
    """The account a request acts on (its lane's key), or None for one of no account (ticks,
    audit events, a query across accounts, a body too malformed to name one)."""
    if kind is MessageType.SUBMIT_ORDER:
        order = body.get("order")
        account = order.get("account") if isinstance(order, dict) else None
    elif kind in _ACCOUNT_QUERIES:
        account = body.get("account")
    else:
        return None
    return account if isinstance(account, str) else None


class _ReplyTo:
    """Where the answers to one ``submit_orders`` request go (its orders' requests carry their index)."""

    __slots__ = ("identity", "request_id")

    def __init__(self, identity: bytes, request_id: Any) -> None:
        self.identity = identity
        self.request_id = request_id


# (identity or _ReplyTo, request_id or index, kind, body, account)
_Request = tuple["bytes | _ReplyTo", Any, MessageType, dict[str, Any], "str | None"]


class EngineAlreadyRunning(WojakError, RuntimeError):
    pass


def prepare_socket(path: Path) -> tuple[int, int]:
    """Make the socket's directory private (0700, ours) and take the engine lock.

    The directory is opened without following a symlink and everything after that goes
    through its descriptor (``fchmod``, the lock file, the stale socket), so a symlink or a
    directory swapped in by someone else is never chmod-ed or written through; a directory
    of another user is refused (``SocketDirError``). Returns ``(dir_fd, lock_fd)``, held for
    the process's life. Refuses to start if another engine holds the lock or answers on the
    socket; removes a stale socket.
    """
    directory = path.parent
    dir_fd = open_socket_dir(directory, create=True, tighten=True)
    lock_name = path.name + ".lock"
    try:
        lock_fd = os.open(lock_name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        os.close(dir_fd)
        raise SocketDirError(
            f"cannot open the engine lock {directory / lock_name} (setting WOJAK_ENGINE_SOCKET): {exc}"
        ) from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        os.close(dir_fd)
        raise EngineAlreadyRunning(f"another engine holds {directory / lock_name}") from None
    try:
        existing = os.lstat(path.name, dir_fd=dir_fd)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):  # a symlink or a file: never connect through it, just remove it
            os.unlink(path.name, dir_fd=dir_fd)
        else:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(fd_path(dir_fd, path.name, path))
            except (ConnectionRefusedError, FileNotFoundError):
                try:
                    os.unlink(path.name, dir_fd=dir_fd)  # stale: its engine is gone
                except FileNotFoundError:
                    pass
            else:
                os.close(lock_fd)
                os.close(dir_fd)
                raise EngineAlreadyRunning(f"an engine is already serving on {path}")
            finally:
                probe.close()
    return dir_fd, lock_fd


class EngineServer:
    def __init__(
        self,
        path: Path,
        handle_batch: HandleBatch,
        handle_now: HandleNow,
        *,
        max_inflight: int = 8192,
        max_batch: int = 512,
        lanes: int = 8,
        alone: Collection[str] = (),
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        metrics: Any = None,
    ) -> None:
        self.path = path
        self.max_frame_bytes = max_frame_bytes
        self.handle_batch = handle_batch
        self.handle_now = handle_now
        self.max_inflight = max_inflight
        self.max_batch = max_batch
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self.lanes = lanes
        self.alone = alone  # accounts that run in a batch of their own (their venue calls are slow)
        self.metrics = metrics
        self._queue: collections.deque[_Request] = collections.deque()
        self._wakeup = asyncio.Event()
        self._processing = 0  # requests in running batches
        self._busy: set[str] = set()  # accounts in a running batch
        self._running: set[asyncio.Task[None]] = set()
        self._ctx = zmq.Context()
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None

    async def serve(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        self._dir_fd, self._lock_fd = prepare_socket(self.path)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a larger frame disconnects its peer inside ZMQ, before it is read: never decoded, never stalls the loop
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_frame_bytes)
        sock.setsockopt(zmq.SNDHWM, 0)  # bounded by max_inflight instead; never drop a reply
        sock.setsockopt(zmq.RCVHWM, self.max_inflight)
        sock.setsockopt(zmq.LINGER, 2000)
        old_umask = os.umask(0o077)
        try:
            # bound through the directory's descriptor: the directory checked is the one bound in
            sock.bind(f"ipc://{fd_path(self._dir_fd, self.path.name, self.path)}")
        finally:
            os.umask(old_umask)
        self._sock = LoopSocket(sock, self._dispatch, burst=self.max_batch)
        self._sock.start()
        log.info("engine listening on ipc://%s", self.path)
        if ready:
            ready()
        processor = asyncio.create_task(self._process(), name="wojak-engine-processor")
        try:
            await stop.wait()
            self._sock.stop()  # accept nothing new; finish what was accepted
            self._wakeup.set()
            while self._queue or self._processing:
                await asyncio.sleep(0.005)
        finally:
            processor.cancel()
            for lane in self._running:
                lane.cancel()
            await asyncio.gather(processor, *self._running, return_exceptions=True)
            self._sock.stop()
            sock.close(linger=2000)
            if self._dir_fd is not None:
                try:
                    os.unlink(self.path.name, dir_fd=self._dir_fd)
                except FileNotFoundError:
                    pass
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            self._ctx.term()
            if self._dir_fd is not None:
                os.close(self._dir_fd)
            log.info("engine stopped")

    def _send(self, identity: bytes, request_id: Any, reply: dict[str, Any], recheck: bool = True) -> None:
        reply["request_id"] = request_id
        try:
            self._sock.send([identity, PROTOCOL_VERSION, _REPLY, encode_body(reply)], recheck)
        except zmq.ZMQError as exc:
            if exc.errno not in (errno.EHOSTUNREACH, zmq.EHOSTUNREACH):
                raise
            if self.metrics is not None:
                self.metrics.undeliverable.inc()
            log.debug("reply %r undeliverable: requester gone", request_id)

    def _dispatch(self, frames: list[bytes]) -> None:
        identity = frames[0]
        try:
            kind, body = decode_frames(frames[1:])
        except ProtocolError as exc:
            if self.metrics is not None:
                self.metrics.protocol_errors.inc()
            self._send(
                identity,
                None,
                {"verdict": Verdict.INVALID.value, "errors": [{"field": "frames", "reason": str(exc), "code": "protocol"}]},
            )
            return
        request_id = body.get("request_id")
        if kind in _IMMEDIATE:
            self._send(identity, request_id, self.handle_now(kind, body))
            return
        if kind is MessageType.SUBMIT_ORDERS:
            self._dispatch_orders(identity, request_id, body)
            return
        if len(self._queue) + self._processing >= self.max_inflight:
            self._send(identity, request_id, {"verdict": Verdict.RETRY.value, "reason": "overloaded", "retry_after": 0.05})
            return
        self._queue.append((identity, request_id, kind, body, account_of(kind, body)))
        self._wakeup.set()

    def _dispatch_orders(self, identity: bytes, request_id: Any, body: dict[str, Any]) -> None:
        """A ``submit_orders`` request: each order is queued as its own ``submit_order`` (its own
        account's lane, its own verdict); the answers go back in one frame per batch."""
        orders = body.get("orders")
        if not isinstance(orders, list) or not 1 <= len(orders) <= MAX_ORDERS_PER_REQUEST:
            reason = f"must be a list of 1 to {MAX_ORDERS_PER_REQUEST} orders"
            self._send(
                identity,
                request_id,
                {"verdict": Verdict.INVALID.value, "errors": [{"field": "orders", "reason": reason, "code": "orders"}]},
            )
            return
        if len(self._queue) + self._processing + len(orders) > self.max_inflight:
            overloaded = {"verdict": Verdict.RETRY.value, "reason": "overloaded", "retry_after": 0.05}
            self._send(identity, request_id, {"parts": [[i, overloaded] for i in range(len(orders))]})
            return
        reply_to = _ReplyTo(identity, request_id)
        shared = {k: v for k, v in body.items() if k not in ("orders", "request_id")}  # principal, expires_at
        kind = MessageType.SUBMIT_ORDER
        for i, order in enumerate(orders):
            one = {**shared, "order": order}
            self._queue.append((reply_to, i, kind, one, account_of(kind, one)))
        self._wakeup.set()

    def _take(self) -> tuple[list[_Request], set[str]]:
        """The next batch: queued requests, in order, whose account is in no running batch."""
        queue, busy, limit, alone = self._queue, self._busy, self.max_batch, self.alone
        batch: list[_Request]
        if not busy and not alone:
            n = min(len(queue), limit)
            batch = [queue.popleft() for _ in range(n)]
        else:
            batch = []
            waiting: list[_Request] = []
            solo: str | None = None  # the account this batch is for alone, if its first is one to run alone
            while queue and len(batch) < limit:
                request = queue.popleft()
                account = request[4]
                if account in busy:
                    waiting.append(request)
                elif not batch:
                    if account in alone:
                        solo = account
                    batch.append(request)
                elif solo is not None:
                    (batch if account == solo else waiting).append(request)
                elif account in alone:
                    waiting.append(request)  # a batch of its own, next
                else:
                    batch.append(request)
            queue.extendleft(reversed(waiting))  # they keep their places, ahead of later arrivals
        return batch, {r[4] for r in batch if r[4] is not None}

    async def _process(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and len(self._running) < self.lanes:
                batch, accounts = self._take()
                if not batch:
                    break  # every queued request waits for its account's running batch
                self._busy |= accounts
                self._processing += len(batch)
                if self.metrics is not None:
                    self.metrics.inflight.set(len(self._queue) + self._processing)
                task = asyncio.create_task(self._run_batch(batch, accounts), name="wojak-engine-lane")
                self._running.add(task)
                task.add_done_callback(self._lane_done)

    def _lane_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()

    async def _run_batch(self, batch: list[_Request], accounts: set[str]) -> None:
        n = len(batch)
        try:
            try:
                replies = await self.handle_batch([(kind, body) for _, _, kind, body, _ in batch])
            except Exception:  # a bug must not kill the engine: answer retry, keep serving
                log.exception("batch of %d failed; answering retry", n)
                replies = [{"verdict": Verdict.RETRY.value, "reason": "engine_error", "retry_after": 1.0} for _ in batch]
            parts: dict[_ReplyTo, list[list[Any]]] = {}
            for (identity, request_id, _, _, _), reply in zip(batch, replies):
                if isinstance(identity, _ReplyTo):  # one of a submit_orders request's orders: answered below
                    parts.setdefault(identity, []).append([request_id, reply])
                else:
                    self._send(identity, request_id, reply, recheck=False)  # each reply is a dict of its own
            for reply_to, answered in parts.items():
                self._send(reply_to.identity, reply_to.request_id, {"parts": answered}, recheck=False)
            self._sock.recheck()
            crash_point("replied")
        finally:
            self._busy -= accounts
            self._processing -= n
