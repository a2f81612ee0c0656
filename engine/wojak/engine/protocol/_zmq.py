"""A ZMQ socket driven by the asyncio loop, shared by the engine's ROUTER and the sidecars' DEALER.

ZMQ's file descriptor is edge-triggered and any socket operation (a send, or reading
``EVENTS``) may consume the edge. So every receive drains until ``EAGAIN``, and every
send re-checks ``EVENTS`` and schedules a drain itself when input is waiting; nothing
relies on a wake-up that a send already swallowed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import zmq

# plain ints: pyzmq's send_multipart/recv_multipart combine its enum flags on every frame,
# which was half the cost of a message's trip through the socket (7 vs 16 us for 3 frames)
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)


def recv_frames(sock: zmq.Socket) -> list[bytes]:
    """One whole multipart message without blocking (raises ``zmq.Again`` when none waits)."""
    frames = [sock.recv(_NOBLOCK)]
    while sock.get(_RCVMORE):
        frames.append(sock.recv(_NOBLOCK))
    return frames


def send_frames(sock: zmq.Socket, frames: list[bytes]) -> None:
    """Send a multipart message without blocking: all of it or, on ``zmq.Again``, none of it
    (ZeroMQ refuses only at the first frame)."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, _NOBLOCK_MORE if i < last else _NOBLOCK)


class LoopSocket:
    def __init__(self, sock: zmq.Socket, on_message: Callable[[list[bytes]], None], *, burst: int = 1024) -> None:
        self.sock = sock
        self.on_message = on_message
        self.burst = burst
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int for FD

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._drain)
        self._schedule()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        sock = self.sock
        for _ in range(self.burst):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed under us
                return
            self.on_message(frames)
        self._schedule()  # more may be waiting: yield to the loop, then continue

    def recheck(self) -> None:
        try:
            if int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                self._schedule()
        except zmq.ZMQError:
            pass

    def send(self, frames: list[bytes], recheck: bool = True) -> None:
        """Send now; raises ``zmq.Again`` when it cannot (no peer, or high-water mark).

        ``recheck=False`` is for a burst of sends: call ``recheck()`` once after it.
        """
        try:
            send_frames(self.sock, frames)
        finally:
            if recheck:
                self.recheck()

    async def send_within(self, frames: list[bytes], timeout: float) -> bool:
        """Send, waiting up to ``timeout`` for a peer to appear; False if none did."""
        give_up = time.monotonic() + timeout
        pause = 0.002
        while True:
            try:
                self.send(frames)
                return True
            except zmq.Again:
                if time.monotonic() >= give_up:
                    return False
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
