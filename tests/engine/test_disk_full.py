"""A full disk met calmly: retry answers, readiness false, a bounded log, recovery without a restart.

The store lives on a 16 MiB tmpfs the test mounts (the suite runs as root, as CI does): room for
SQLite's WAL up to its automatic checkpoint (1,000 pages), as a real disk has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wojak.engine.protocol import MessageType

TICK = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"}


def order(i: int) -> dict:
    return {"client_order_id": f"df-{i}", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "25",
            "order_type": "limit", "limit_price": "24001", "tag": "x" * 100}  # fmt: skip


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"this test mounts a tmpfs and needs root: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ready(engine) -> bool:
    return engine.request(MessageType.PING, {}, 1.0).get("ready") is True


def test_a_full_disk_answers_retry_turns_readiness_false_and_recovers_without_a_restart(engine_factory, small_disk):
    engine = engine_factory(WOJAK_STORE=f"sqlite:///{small_disk}/wojak.sqlite", WOJAK_SANDBOX_FILL_PROBABILITY="1",
                            WOJAK_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")  # fmt: skip
    pid = engine.proc.pid
    assert engine.request(MessageType.TICK, {"tick": TICK})["status"] == "applied"
    assert engine.request(MessageType.SUBMIT_ORDER, {"order": order(0)})["verdict"] == "filled"
    assert ready(engine)

    filler = fill(small_disk)
    log_before = engine.log.read_text().count("\n")
    replies = {}
    # SQLite reuses the room its WAL already has, so some orders may still fit: send until the
    # store refuses, then a hundred more
    i, refused_at = 0, None
    while i < 5000 and (refused_at is None or i < refused_at + 100):
        i += 1
        replies[i] = engine.request(MessageType.SUBMIT_ORDER, {"order": order(i)})
        if refused_at is None and replies[i]["verdict"] == "retry":
            refused_at = i
    assert {r["verdict"] for r in replies.values()} <= {"retry", "filled", "rejected"}
    assert any(r["verdict"] == "retry" and r["reason"] == "store_unavailable" for r in replies.values()), {(r["verdict"], r.get("reason")) for r in replies.values()}
    wait_for(lambda: not ready(engine), 10, "readiness to turn false")
    detail = engine.request(MessageType.PING, {}, 1.0)
    assert detail["store"]["ok"] is False and "full" in detail["store"]["reason"]
    log = engine.log.read_text()
    new_lines = log.count("\n") - log_before
    assert new_lines <= 5, f"{new_lines} log lines for a full disk:\n{log[-3000:]}"
    assert "Traceback" not in log

    filler.unlink()
    wait_for(lambda: ready(engine), 10, "readiness to come back")
    for i, reply in replies.items():  # every order answered final is stored; every retry goes through now
        again = engine.request(MessageType.SUBMIT_ORDER, {"order": order(i)})
        if reply["verdict"] == "retry":
            assert again["verdict"] in ("filled", "duplicate"), again
        else:
            assert again["verdict"] == "duplicate" and again["order"]["state"] == reply["verdict"]
    assert engine.proc.pid == pid and engine.proc.poll() is None  # no restart
    text = engine.request(MessageType.METRICS, {})["text"]
    assert "wojak_engine_ready 1.0" in text


def test_an_engine_started_on_a_full_disk_says_so_in_one_line(tmp_path, small_disk):
    fill(small_disk)
    from tests._processes import EngineProcess

    proc = EngineProcess(tmp_path / "data", {"WOJAK_STORE": f"sqlite:///{small_disk}/new.sqlite"})
    (tmp_path / "data").mkdir()
    done = subprocess.run([sys.executable, "-m", "wojak", "engine"], env=proc.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"{small_disk}/new.sqlite" in lines[0] and "WOJAK_STORE" in lines[0] and "bytes free" in lines[0]
    assert "Traceback" not in done.stderr
