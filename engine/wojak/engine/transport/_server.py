"""ROUTER server: drains the socket into batches, answers pings at once, never drops a reply.

In-flight requests are bounded (``max_inflight``): past it the engine answers ``retry``
(overloaded) instead of queueing without limit. Because of that bound the send high-water
mark can be unlimited, so the ROUTER never silently drops a reply; with ROUTER_MANDATORY
a reply to a peer that has gone raises and is counted (the peer resends after its deadline).
An inbound frame larger than ``max_frame_bytes`` (ZMQ_MAXMSGSIZE) disconnects its sender
inside ZMQ before it is read, so it is never decoded and never stalls the loop.
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
from typing import Any, Awaitable, Callable

import zmq

from wojak.engine._faults import crash_point
from wojak.engine.protocol import (
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
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        metrics: Any = None,
    ) -> None:
        self.path = path
        self.max_frame_bytes = max_frame_bytes
        self.handle_batch = handle_batch
        self.handle_now = handle_now
        self.max_inflight = max_inflight
        self.max_batch = max_batch
        self.metrics = metrics
        self._queue: collections.deque[tuple[bytes, Any, MessageType, dict[str, Any]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._processing = 0
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
            try:
                await processor
            except asyncio.CancelledError:
                pass
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
        if len(self._queue) + self._processing >= self.max_inflight:
            self._send(identity, request_id, {"verdict": Verdict.RETRY.value, "reason": "overloaded", "retry_after": 0.05})
            return
        self._queue.append((identity, request_id, kind, body))
        self._wakeup.set()

    async def _process(self) -> None:
        queue = self._queue
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while queue:
                n = min(len(queue), self.max_batch)
                batch = [queue.popleft() for _ in range(n)]
                self._processing = n
                if self.metrics is not None:
                    self.metrics.inflight.set(len(queue) + n)
                try:
                    replies = await self.handle_batch([(kind, body) for _, _, kind, body in batch])
                except Exception:  # a bug must not kill the engine: answer retry, keep serving
                    log.exception("batch of %d failed; answering retry", n)
                    replies = [{"verdict": Verdict.RETRY.value, "reason": "engine_error", "retry_after": 1.0} for _ in batch]
                for (identity, request_id, _, _), reply in zip(batch, replies):
                    self._send(identity, request_id, reply, recheck=False)  # each reply is a dict of its own
                self._sock.recheck()
                crash_point("replied")
                self._processing = 0
                await asyncio.sleep(0)  # let the receiver drain: the next batch commits together
