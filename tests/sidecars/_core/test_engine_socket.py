"""The sidecar's engine client checks the socket's directory before it connects (issue 8):
another user's listener, a symlinked or world-writable directory are refused, so an order
never reaches a listener that is not the engine's."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

import msgpack
import pytest
import zmq

from wojak.engine.protocol import ALL_SCOPES, Principal, SocketDirError
from wojak.engine.protocol.client import EngineClient

NOBODY = 65534
TRADER = Principal.of("test", ["*"], ALL_SCOPES)
ORDER = {"client_order_id": "o-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
         "order_type": "limit", "limit_price": "24000"}  # fmt: skip


class FakeRouter:
    """A listener that answers every request ``filled`` (with ``pad`` bytes of padding)."""

    def __init__(self, path: Path, pad: int = 0) -> None:
        self.path, self.pad = path, pad
        self.received = 0
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.bind(f"ipc://{path}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(50):
                continue
            identity, version, _, body = self._sock.recv_multipart()
            self.received += 1
            reply = {"verdict": "filled", "request_id": msgpack.unpackb(body)["request_id"], "pad": "x" * self.pad}
            self._sock.send_multipart([identity, version, b"reply", msgpack.packb(reply)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close(0)
        self._ctx.term()


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="wojak-cl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def submit(path: Path) -> dict:
    async with EngineClient(str(path), deadline=1.0) as client:
        return await client.submit_order(dict(ORDER), TRADER)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown a directory to another user")
def test_another_users_listener_is_refused_before_anything_is_sent(base):
    run = base / "run"
    run.mkdir(mode=0o700)
    router = FakeRouter(run / "engine.sock")  # answers "filled" to anything
    os.chown(run / "engine.sock", NOBODY, NOBODY)
    os.chown(run, NOBODY, NOBODY)
    try:
        with pytest.raises(SocketDirError, match=f"belongs to uid {NOBODY}.*WOJAK_ENGINE_SOCKET"):
            asyncio.run(submit(run / "engine.sock"))
    finally:
        router.close()
    assert router.received == 0, "not one byte to another user's listener"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown a socket to another user")
def test_another_users_socket_in_our_directory_is_refused(base):
    run = base / "run"
    run.mkdir(mode=0o700)
    router = FakeRouter(run / "engine.sock")
    os.chown(run / "engine.sock", NOBODY, NOBODY)
    try:
        with pytest.raises(SocketDirError, match=f"engine socket .* belongs to uid {NOBODY}"):
            asyncio.run(submit(run / "engine.sock"))
    finally:
        router.close()
    assert router.received == 0


def test_a_symlinked_directory_is_refused(base):
    real = base / "real"
    real.mkdir(mode=0o700)
    router = FakeRouter(real / "engine.sock")
    (base / "run").symlink_to(real, target_is_directory=True)
    try:
        with pytest.raises(SocketDirError, match="is a symlink.*WOJAK_ENGINE_SOCKET"):
            asyncio.run(submit(base / "run" / "engine.sock"))
    finally:
        router.close()
    assert router.received == 0


def test_a_directory_others_may_write_to_is_refused(base):
    run = base / "run"
    run.mkdir()
    os.chmod(run, 0o777)
    with pytest.raises(SocketDirError, match="writable by other users"):
        asyncio.run(submit(run / "engine.sock"))
    assert stat.S_IMODE(run.stat().st_mode) == 0o777, "the sidecar does not change it"


def test_our_own_engine_is_reached_and_a_missing_directory_is_made_private(base):
    reply = asyncio.run(submit(base / "new" / "engine.sock"))  # no engine yet: retry, never an error
    assert reply["verdict"] == "retry"
    assert stat.S_IMODE((base / "new").stat().st_mode) == 0o700 and (base / "new").stat().st_uid == os.getuid()
    router = FakeRouter(base / "new" / "engine.sock")
    try:
        assert asyncio.run(submit(base / "new" / "engine.sock"))["verdict"] == "filled"
    finally:
        router.close()


def test_replies_up_to_the_reply_limit_are_accepted(base):
    (base / "run").mkdir(mode=0o700)
    router = FakeRouter(base / "run" / "engine.sock", pad=2 * 1024 * 1024)  # a big list reply
    try:
        reply = asyncio.run(submit(base / "run" / "engine.sock"))
    finally:
        router.close()
    assert reply["verdict"] == "filled" and len(reply["pad"]) == 2 * 1024 * 1024
    assert EngineClient.max_reply_bytes == 4 * 1024 * 1024


def test_the_http_sidecar_refuses_another_users_listener_in_one_line(tmp_path):
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="wojak-http-", dir="/tmp"))
    run = base / "run"
    run.mkdir(mode=0o700)
    router = FakeRouter(run / "engine.sock")
    os.chown(run / "engine.sock", NOBODY, NOBODY)
    os.chown(run, NOBODY, NOBODY)
    try:
        env = {**os.environ, "WOJAK_ENGINE_SOCKET": str(run / "engine.sock"), "WOJAK_API_KEYS": "k" * 24, "WOJAK_DEV": "1",
               "WOJAK_SIDECAR_PORT": "0"}  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "wojak", "sidecar", "http"], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    finally:
        router.close()
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and f"belongs to uid {NOBODY}" in lines[0] and "WOJAK_ENGINE_SOCKET" in lines[0], done.stderr
    assert router.received == 0
