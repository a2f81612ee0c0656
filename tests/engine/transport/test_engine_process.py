"""The engine as a real process: private socket, no TCP, refuses a second instance, survives garbage."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import msgpack
import zmq

from tests._processes import TRADER
from wojak.engine.protocol import MessageType


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _inet_sockets(pid: int) -> list[str]:
    mine = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in mine:
                found.append(f"{table} {cols[1]} state {cols[3]}")
    return found


def test_engine_has_no_tcp_or_udp_socket(engine):
    assert engine.ping()
    assert _socket_inodes(engine.pid), "the engine should hold its IPC socket"
    assert _inet_sockets(engine.pid) == []


def test_socket_directory_is_private(engine_factory, tmp_path):
    engine = engine_factory()
    directory = engine.socket.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert directory.stat().st_uid == os.getuid()
    assert stat.S_ISSOCK(engine.socket.stat().st_mode)


def test_a_loose_existing_directory_is_tightened(engine_factory, tmp_path):
    from tests._processes import EngineProcess

    proc = EngineProcess(tmp_path, {})
    proc.socket.parent.mkdir(parents=True, mode=0o755)
    os.chmod(proc.socket.parent, 0o755)
    proc.start()
    try:
        assert stat.S_IMODE(proc.socket.parent.stat().st_mode) == 0o700
    finally:
        proc.kill()


def test_a_second_engine_on_a_live_socket_refuses_to_start(engine):
    second = subprocess.run(
        [sys.executable, "-m", "wojak", "engine"], env=engine.env, capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 2
    assert "already" in second.stderr or "holds" in second.stderr
    assert engine.ping()


def test_a_stale_socket_from_a_killed_engine_is_replaced(engine):
    engine.kill()
    assert engine.socket.exists()  # kill -9 leaves the socket file behind
    engine.start()
    assert engine.ping()


def test_malformed_frames_get_an_invalid_reply_and_the_engine_survives(engine):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"ipc://{engine.socket}")
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    try:
        for frames in ([b"\x01", b"ping"], [b"\x09", b"ping", msgpack.packb({})], [b"\x01", b"nope", b"\xc1"],
                       [b"\x01", b"submit_order", b"\xff\xff"]):  # fmt: skip
            sock.send_multipart(frames)
            reply = msgpack.unpackb(sock.recv_multipart()[2])
            assert reply["verdict"] == "invalid" and reply["errors"][0]["field"] == "frames"
        garbage = {"request_id": 7, "order": "garbage", "principal": TRADER.to_wire()}
        sock.send_multipart([b"\x01", b"submit_order", msgpack.packb(garbage)])
        reply = msgpack.unpackb(sock.recv_multipart()[2])
        assert reply == {"verdict": "invalid", "errors": [{"field": "body", "reason": "must be an object", "code": "model_type"}], "request_id": 7}
        # without a principal nothing is even validated
        sock.send_multipart([b"\x01", b"submit_order", msgpack.packb({"request_id": 8, "order": "garbage"})])
        reply = msgpack.unpackb(sock.recv_multipart()[2])
        assert reply["verdict"] == "forbidden" and reply["reason"] == "principal_missing" and reply["request_id"] == 8
    finally:
        sock.close(0)
        ctx.term()
    assert engine.ping()


def test_cli_ping_and_graceful_stop(engine):
    ok = subprocess.run([sys.executable, "-m", "wojak", "engine", "ping", "--socket", str(engine.socket)],
                        capture_output=True, text=True, timeout=30)  # fmt: skip
    assert ok.returncode == 0 and f"pid {engine.pid}" in ok.stdout
    assert engine.terminate() == 0
    assert not engine.socket.exists()
    down = subprocess.run([sys.executable, "-m", "wojak", "engine", "ping", "--socket", str(engine.socket), "--timeout", "0.5"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert down.returncode == 1


def test_overload_answers_retry_and_never_drops_a_reply(engine_factory):
    import asyncio

    from wojak.engine.protocol.client import EngineClient

    engine = engine_factory(WOJAK_ENGINE_MAX_INFLIGHT="4", WOJAK_ENGINE_MAX_BATCH="2", WOJAK_SANDBOX_LATENCY_MS="20")
    engine.request(MessageType.TICK, {"tick": {"symbol": "NIFTY-FUT", "bid": "100", "ask": "101", "last": "100"}})

    async def flood():
        async with EngineClient(str(engine.socket), window=500) as client:
            return await asyncio.gather(*[
                client.submit_order({"client_order_id": f"ov-{i}", "account": f"a{i}", "symbol": "NIFTY-FUT", "side": "buy",
                                     "quantity": "1", "order_type": "limit", "limit_price": "100"}, TRADER)
                for i in range(300)
            ])  # fmt: skip

    replies = asyncio.run(flood())
    verdicts = [r["verdict"] for r in replies]
    assert len(replies) == 300
    assert "retry" in verdicts and {r["reason"] for r in replies if r["verdict"] == "retry"} == {"overloaded"}
    assert set(verdicts) <= {"filled", "rejected", "retry"}
