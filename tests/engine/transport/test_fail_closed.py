"""A real `wojak engine` fails closed (issue 8): no risk file, another user's or a symlinked
socket directory, plain-text endpoints off loopback and a stray crash hook are refused or
ignored; an oversized frame is dropped by ZMQ without stalling anyone else."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from tests._processes import TRADER, EngineProcess
from wojak.engine.protocol import MessageType
from wojak.engine.protocol.client import EngineClient

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"}
NOBODY = 65534


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean engine environment (nothing WOJAK_ inherited) on a private socket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOJAK_")}
    sock = Path(tempfile.mkdtemp(prefix="wojak-fc-", dir="/tmp")) / "run" / "engine.sock"
    env.update(WOJAK_ENGINE_SOCKET=str(sock), WOJAK_STORE=f"sqlite:///{tmp_path / 'w.sqlite'}", WOJAK_LOG_LEVEL="WARNING")
    env.update(extra)
    return env


def _engine(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-m", "wojak", "engine"], env=env, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(Path(env["WOJAK_ENGINE_SOCKET"]).parent.parent, ignore_errors=True)


def _demo() -> str:
    from wojak.engine.risk import demo_risk_config_path

    return demo_risk_config_path()


# -- 1. the risk config is required ----------------------------------------------------


def test_no_risk_config_no_engine_one_line_naming_the_setting(tmp_path):
    result = _engine(_env(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WOJAK_ENGINE_RISK_CONFIG" in lines[0], result.stderr
    assert not (tmp_path / "w.sqlite").exists(), "nothing opened before the refusal"


def test_a_risk_file_missing_a_limit_is_refused_naming_it(tmp_path):
    text = Path(_demo()).read_text().replace('  max_daily_loss: "5000000"', "")
    (tmp_path / "risk.yaml").write_text(text)
    result = _engine(_env(tmp_path, WOJAK_ENGINE_RISK_CONFIG=str(tmp_path / "risk.yaml")))
    assert result.returncode == 2 and "missing max_daily_loss" in result.stderr and "risk.yaml" in result.stderr


def test_the_demo_config_runs_the_readme_first_order(engine_factory):
    engine = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")  # EngineProcess passes the demo file
    assert engine.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    reply = engine.request(MessageType.SUBMIT_ORDER, {"order": {
        "client_order_id": "first-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50",
        "order_type": "limit", "limit_price": "24001"}})  # fmt: skip
    assert reply["verdict"] == "filled", reply
    market = engine.request(MessageType.SUBMIT_ORDER, {"order": {
        "client_order_id": "m-1", "account": "desk-1", "symbol": "BANKNIFTY-FUT", "side": "buy", "quantity": "1",
        "order_type": "market"}})  # fmt: skip
    assert market["verdict"] == "denied", market  # no tick to price it: the stale-tick rule is on


# -- 4. plain-text endpoints off loopback ------------------------------------------------


@pytest.mark.parametrize(
    "setting, extra",
    [
        ("WOJAK_STORE", {"WOJAK_STORE": "couchbase://db.example.internal?bucket=wojak",
                         "WOJAK_COUCHBASE_USERNAME": "u", "WOJAK_COUCHBASE_PASSWORD": "p"}),
        ("WOJAK_ENGINE_ESCALATION_SINK", {"WOJAK_ENGINE_ESCALATION_SINK": "http://risk.example.internal/hook",
                                          "WOJAK_ESCALATION_WEBHOOK_SECRET": "s"}),
        ("WOJAK_ENGINE_ESCALATION_SINK", {"WOJAK_ENGINE_ESCALATION_SINK":
                                          "sqs://esc?endpoint=http://sqs.example.internal:4566&region=us-east-1"}),
        ("WOJAK_VENUE", {"WOJAK_VENUE": "lambda://sandbox?endpoint=http://lambda.example.internal:9000&region=us-east-1"}),
    ],
)  # fmt: skip
def test_plain_text_endpoints_off_loopback_are_refused(tmp_path, setting, extra):
    result = _engine(_env(tmp_path, WOJAK_ENGINE_RISK_CONFIG=_demo(), **extra))
    assert result.returncode == 2, result.stderr
    assert setting in result.stderr and "WOJAK_ALLOW_INSECURE_TRANSPORT=1" in result.stderr
    assert "plain text" in result.stderr and ("https://" in result.stderr or "couchbases://" in result.stderr)


def test_the_explicit_switch_allows_a_plain_text_webhook(tmp_path, engine_factory):
    engine = engine_factory(WOJAK_ENGINE_ESCALATION_SINK="http://risk.example.internal/hook",
                            WOJAK_ESCALATION_WEBHOOK_SECRET="s", WOJAK_ALLOW_INSECURE_TRANSPORT="1")  # fmt: skip
    assert engine.ping()


# -- 5. the socket directory -----------------------------------------------------------------


def test_a_symlinked_socket_directory_is_refused_and_its_target_untouched(tmp_path):
    target = Path(tempfile.mkdtemp(prefix="wojak-target-", dir="/tmp"))
    try:
        os.chmod(target, 0o755)
        env = _env(tmp_path, WOJAK_ENGINE_RISK_CONFIG=_demo())
        run_dir = Path(env["WOJAK_ENGINE_SOCKET"]).parent
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.symlink_to(target, target_is_directory=True)
        result = _engine(env)
        assert result.returncode == 2
        assert "is a symlink" in result.stderr and "WOJAK_ENGINE_SOCKET" in result.stderr, result.stderr
        assert stat.S_IMODE(target.stat().st_mode) == 0o755, "never chmod a target reached through a symlink"
        assert list(target.iterdir()) == [], "no lock, no socket through the symlink"
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_symlink_in_place_of_the_socket_is_removed_not_followed(engine_factory, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    engine = EngineProcess(tmp_path, {})
    engine.socket.parent.mkdir(parents=True, mode=0o700)
    engine.socket.symlink_to(victim)
    try:
        with pytest.raises(Exception, match="is a symlink"):  # a client refuses it meanwhile
            engine.ping()
        engine.start(wait=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if stat.S_ISSOCK(os.lstat(engine.socket).st_mode):
                    break
            except FileNotFoundError:  # removed, not yet bound
                pass
            time.sleep(0.05)
        engine.wait_ready()
        assert stat.S_ISSOCK(os.lstat(engine.socket).st_mode)
        assert victim.read_text() == "keep me"
    finally:
        engine.kill()
        shutil.rmtree(engine.socket_base, ignore_errors=True)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown a directory to another user")
def test_a_socket_directory_of_another_user_is_refused(tmp_path):
    env = _env(tmp_path, WOJAK_ENGINE_RISK_CONFIG=_demo())
    run_dir = Path(env["WOJAK_ENGINE_SOCKET"]).parent
    run_dir.mkdir(parents=True, mode=0o777)
    os.chmod(run_dir, 0o777)
    os.chown(run_dir, NOBODY, NOBODY)
    result = subprocess.run([sys.executable, "-m", "wojak", "engine"], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert result.returncode == 2
        assert f"belongs to uid {NOBODY}" in result.stderr and "WOJAK_ENGINE_SOCKET" in result.stderr, result.stderr
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o777 and run_dir.stat().st_uid == NOBODY
        assert list(run_dir.iterdir()) == []
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


# -- 6. the crash hook is test-only ------------------------------------------------------------


def test_the_crash_hook_without_the_test_switch_is_ignored_with_a_warning(engine_factory):
    engine = engine_factory(WOJAK_ENGINE_CRASH_AT="validated,replied", WOJAK_TEST_FAULTS="", WOJAK_SANDBOX_FILL_PROBABILITY="1")
    engine.request(MessageType.TICK, {"tick": TICK})
    reply = engine.request(MessageType.SUBMIT_ORDER, {"order": {
        "client_order_id": "c-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
        "order_type": "limit", "limit_price": "24001"}})  # fmt: skip
    assert reply["verdict"] == "filled"
    assert engine.proc is not None and engine.proc.poll() is None and engine.ping()
    assert "WOJAK_ENGINE_CRASH_AT is set but IGNORED" in engine.log.read_text()


def test_an_unknown_crash_point_with_the_switch_is_refused(tmp_path):
    result = _engine(_env(tmp_path, WOJAK_ENGINE_RISK_CONFIG=_demo(), WOJAK_TEST_FAULTS="1", WOJAK_ENGINE_CRASH_AT="nowhere"))
    assert result.returncode == 2 and "WOJAK_ENGINE_CRASH_AT" in result.stderr and "nowhere" in result.stderr


# -- 7. the frame size limit -------------------------------------------------------------------


def _huge_body(size: int) -> bytes:
    """A msgpack map whose one value is an array of ~size nils: slow and big to decode."""
    n = size - 12
    return b"\x81\xa5order\xdd" + n.to_bytes(4, "big") + b"\xc0" * n


def test_a_29_mb_frame_is_dropped_by_zmq_and_never_stalls_other_clients(engine):
    """Without ZMQ_MAXMSGSIZE, four such frames held another client's ping ~2 s (measured)."""
    assert engine.ping()

    async def scenario() -> tuple[float, int, dict]:
        latencies: list[float] = []
        stop = asyncio.Event()
        async with EngineClient(str(engine.socket)) as client:
            async def pinger() -> None:
                while not stop.is_set():
                    started = time.perf_counter()
                    assert await client.ping(deadline=5.0)
                    latencies.append(time.perf_counter() - started)
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(pinger())
            await asyncio.sleep(0.2)
            ctx = zmq.Context()
            attacker = ctx.socket(zmq.DEALER)
            attacker.setsockopt(zmq.LINGER, 0)
            attacker.connect(f"ipc://{engine.socket}")
            try:
                big = _huge_body(29 * 1024 * 1024)
                for _ in range(4):  # without the limit each takes ~0.5 s to decode on the engine's loop
                    attacker.send_multipart([b"\x01", b"submit_order", big])
                # the engine never answers: each frame disconnects the peer (off this loop: the pings go on)
                answered = await asyncio.to_thread(attacker.poll, 3000)
            finally:
                attacker.close(0)
                ctx.term()
            await asyncio.sleep(0.5)
            stop.set()
            await task
            # a frame under the limit is still read and answered (the limit is about size only)
            small = await client.request(MessageType.SUBMIT_ORDER, {"order": "x" * 50_000, "principal": TRADER.to_wire()})
        return max(latencies), answered, small

    worst, answered, small = asyncio.run(scenario())
    assert answered == 0
    assert worst < 1.0, f"a ping waited {worst:.3f}s behind the 29 MB frame"
    assert small["verdict"] == "invalid"
    assert engine.ping()


def test_the_frame_limit_is_a_setting(engine_factory):
    engine = engine_factory(WOJAK_ENGINE_MAX_FRAME_BYTES="8192")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{engine.socket}")
    try:
        sock.send_multipart([b"\x01", b"ping", msgpack.packb({"request_id": 1, "pad": "x" * 4000})])
        assert sock.poll(5000), "under the limit: answered"
        sock.recv_multipart()
        sock.send_multipart([b"\x01", b"ping", msgpack.packb({"request_id": 2, "pad": "x" * 9000})])
        assert sock.poll(1500) == 0, "over the limit: dropped, never answered"
    finally:
        sock.close(0)
        ctx.term()
    assert engine.ping()


# -- the store's files on a shared host --------------------------------------------------------


def test_the_sqlite_store_is_private_to_the_engine_user(engine_factory, tmp_path):
    data = tmp_path / "fresh"
    engine = engine_factory(data_dir=tmp_path, WOJAK_STORE=f"sqlite:///{data / 'w.sqlite'}")
    engine.request(MessageType.TICK, {"tick": TICK})
    assert stat.S_IMODE(data.stat().st_mode) == 0o700, "a directory it creates is 0700"
    for name in ("w.sqlite", "w.sqlite-wal", "w.sqlite-shm"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    engine.kill()
    os.chmod(data / "w.sqlite", 0o644)  # left readable by others (e.g. an older version, a copy)
    engine.start()
    assert stat.S_IMODE((data / "w.sqlite").stat().st_mode) == 0o600
