"""ROUTER server: drains the socket into batches, answers pings at once, never drops a reply.

In-flight requests are bounded (``max_inflight``): past it the engine answers ``retry``
(overloaded) instead of queueing without limit. Because of that bound the send high-water
mark can be unlimited, so the ROUTER never silently drops a reply; with ROUTER_MANDATORY
a reply to a peer that has gone raises and is counted (the peer resends after its deadline).
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
    Verdict,
    decode_frames,
    encode_body,
)

log = logging.getLogger(__name__)

_REPLY = MessageType.REPLY.value
_IMMEDIATE = frozenset({MessageType.PING, MessageType.METRICS})

HandleBatch = Callable[[list[tuple[MessageType, dict[str, Any]]]], Awaitable[list[dict[str, Any]]]]
HandleNow = Callable[[MessageType, dict[str, Any]], dict[str, Any]]


class EngineAlreadyRunning(RuntimeError):
    pass


class SocketDirError(RuntimeError):
    pass


def prepare_socket(path: Path) -> int:
    """Make the socket's directory private (0700, ours) and take the engine lock.

    Returns the lock's file descriptor (held for the process's life). Refuses to start
    if another engine holds the lock or answers on the socket; removes a stale socket.
    """
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SocketDirError(f"cannot create socket directory {directory} (setting WOJAK_ENGINE_SOCKET): {exc}") from None
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise SocketDirError(
            f"socket directory {directory} belongs to uid {info.st_uid}, not this user ({os.getuid()}): "
            "choose a private directory with WOJAK_ENGINE_SOCKET"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)
    lock_fd = os.open(directory / (path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise EngineAlreadyRunning(f"another engine holds {directory / (path.name + '.lock')}") from None
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # stale: its engine is gone
        else:
            os.close(lock_fd)
            raise EngineAlreadyRunning(f"an engine is already serving on {path}")
        finally:
            probe.close()
    return lock_fd


class EngineServer:
    def __init__(
        self,
        path: Path,
        handle_batch: HandleBatch,
        handle_now: HandleNow,
        *,
        max_inflight: int = 8192,
        max_batch: int = 512,
        metrics: Any = None,
    ) -> None:
        self.path = path
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

    async def serve(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        self._lock_fd = prepare_socket(self.path)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)  # bounded by max_inflight instead; never drop a reply
        sock.setsockopt(zmq.RCVHWM, self.max_inflight)
        sock.setsockopt(zmq.LINGER, 2000)
        old_umask = os.umask(0o077)
        try:
            sock.bind(f"ipc://{self.path}")
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
            self.path.unlink(missing_ok=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            self._ctx.term()
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
            self._send(identity, None, {"verdict": Verdict.INVALID.value,
                                        "errors": [{"field": "frames", "reason": str(exc), "code": "protocol"}]})  # fmt: skip
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
