"""Connection limits of the HTTP server: header size and count, header and body timeouts,
idle keep-alive, open connections. A real sidecar process over real sockets.

Every refusal here happens before a route runs, so no engine is started: the sidecar is
pointed at a socket nobody listens on."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests._processes import API_KEY, EngineProcess, HttpSidecarProcess

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
KEEPALIVE = 1.0
SLACK = 1.5  # scheduling on a shared 2-core machine


def _sidecar(tmp: Path, **env: str) -> HttpSidecarProcess:
    engine = EngineProcess(tmp, {})  # never started: these refusals do not reach it
    return HttpSidecarProcess(engine, WOJAK_DEV="1", **env).start()


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    proc = _sidecar(tmp_path_factory.mktemp("limits"), WOJAK_SIDECAR_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
                    WOJAK_SIDECAR_BODY_TIMEOUT=str(BODY_TIMEOUT), WOJAK_SIDECAR_KEEPALIVE_TIMEOUT=str(KEEPALIVE))  # fmt: skip
    yield proc
    proc.stop()


def _connect(proc: HttpSidecarProcess, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proc.port), timeout=timeout)


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (EOF or reset), and how long that took."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"the connection was still open after {limit}s (got {data[:80]!r})") from None
    return data, time.monotonic() - started


def _send_and_read(proc: HttpSidecarProcess, payload: bytes, limit: float = 15.0) -> tuple[bytes, float]:
    """Send ``payload`` (in a thread: the server may stop reading) while reading the answer."""
    sock = _connect(proc)

    def send() -> None:
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server closed: expected once it has answered

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        return _read_until_closed(sock, limit)
    finally:
        sender.join(5)
        sock.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _healthy(proc: HttpSidecarProcess) -> None:
    started = time.monotonic()
    assert httpx.get(proc.url + "/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 2


def test_ten_megabytes_of_headers_are_refused_with_431_without_buffering_them(sidecar):
    rss = _rss_kib(sidecar.proc.pid)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    data, took = _send_and_read(sidecar, head + b"a" * (10 * 1024 * 1024) + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    assert b"connection: close" in data.lower() and took < 5
    assert _rss_kib(sidecar.proc.pid) - rss < 20 * 1024  # not 10 MB per such request
    _healthy(sidecar)


def test_a_hundred_thousand_headers_are_refused_with_431(sidecar):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 100_000 + b"\r\n"
    data, _ = _send_and_read(sidecar, head)
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    _healthy(sidecar)


@pytest.mark.parametrize("count, status", [(100, b"200"), (101, b"431")])
def test_the_header_count_limit_is_exact(sidecar, count, status):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(count - 2)) + b"\r\n"  # fmt: skip
    data, _ = _send_and_read(sidecar, head)
    assert data.startswith(b"HTTP/1.1 " + status), data[:200]


@pytest.mark.parametrize("extra, status", [(-200, b"200"), (200, b"431")])
def test_the_header_size_limit_holds_in_one_read_and_in_many(sidecar, extra, status):
    line = b"GET /healthz HTTP/1.1\r\n"
    fixed = line + b"Host: x\r\nConnection: close\r\nX-Pad: \r\n"
    pad = b"p" * (16 * 1024 - len(fixed) + extra)
    request = fixed[:-2] + pad + b"\r\n\r\n"
    data, _ = _send_and_read(sidecar, request)  # in one read
    assert data.startswith(b"HTTP/1.1 " + status), data[:200]
    sock = _connect(sidecar)  # a byte at a time... well, in 1 KiB pieces
    try:
        for i in range(0, len(request), 1024):
            sock.sendall(request[i : i + 1024])
            time.sleep(0.001)
        data, _ = _read_until_closed(sock, 10)
    except (BrokenPipeError, ConnectionResetError):
        data, _ = _read_until_closed(sock, 10)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 " + status), data[:200]


def test_two_hundred_slow_loris_connections_are_closed_within_the_header_timeout(sidecar):
    async def loris(i: int) -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
        started = time.monotonic()
        trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
        got = b""
        try:
            for byte in trickle:
                writer.write(bytes([byte]))
                try:
                    got = await asyncio.wait_for(reader.read(1024), timeout=1.0)  # 1 byte/s
                except asyncio.TimeoutError:
                    continue
                break  # the server answered or closed
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        return time.monotonic() - started, got

    async def attack() -> tuple[list[tuple[float, bytes]], float]:
        tasks = [asyncio.create_task(loris(i)) for i in range(200)]
        await asyncio.sleep(0.5)
        probe = time.monotonic()  # the server still answers others meanwhile
        async with httpx.AsyncClient() as client:
            assert (await client.get(sidecar.url + "/healthz", timeout=5)).status_code == 200
        probe = time.monotonic() - probe
        return await asyncio.gather(*tasks), probe

    results, probe = asyncio.run(attack())
    assert probe < 2, probe
    longest = max(t for t, _ in results)
    assert longest <= HEADER_TIMEOUT + SLACK, longest
    answered = sum(1 for _, got in results if got.startswith(b"HTTP/1.1 408 "))
    assert answered >= 190, [got[:40] for _, got in results if not got.startswith(b"HTTP/1.1 408 ")][:5]
    _healthy(sidecar)


def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(sidecar):
    sock = _connect(sidecar)
    try:
        data, took = _read_until_closed(sock, HEADER_TIMEOUT + SLACK + 2)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 408 ") and took <= HEADER_TIMEOUT + SLACK, (data[:80], took)


def test_a_content_length_larger_than_the_body_does_not_hold_the_connection(sidecar):
    body = b'{"client_order_id": "short"'
    for key, first in ((API_KEY, b"HTTP/1.1 408 "), ("wrong-key-0123456789", b"HTTP/1.1 401 ")):
        head = (b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n")  # fmt: skip
        sock = _connect(sidecar)
        try:
            sock.sendall(head + body)
            data, took = _read_until_closed(sock, BODY_TIMEOUT + SLACK + 2)
        finally:
            sock.close()
        # a good key waits for the body, then 408; a wrong one is answered at once, then closed
        assert data.startswith(first), data[:200]
        assert took <= BODY_TIMEOUT + SLACK, took


def test_an_idle_keep_alive_connection_is_closed(sidecar):
    sock = _connect(sidecar)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        data, took = _read_until_closed(sock, KEEPALIVE + SLACK + 2)
    finally:
        sock.close()
    assert data == b"" and took <= KEEPALIVE + SLACK, took


def test_keep_alive_requests_in_a_row_each_get_their_own_header_timeout(sidecar):
    sock = _connect(sidecar)
    try:
        for _ in range(4):  # 4 x 0.8 s > the header timeout: it restarts per request
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.8)
            sock.sendall(b"\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):  # head and body may come in two reads
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        sock.close()


def test_connections_past_the_limit_get_503(tmp_path):
    proc = _sidecar(tmp_path, WOJAK_SIDECAR_MAX_CONNECTIONS="20", WOJAK_SIDECAR_HEADER_TIMEOUT="30")
    held = []
    try:
        for _ in range(20):
            held.append(_connect(proc))
        time.sleep(0.3)
        data, took = _send_and_read(proc, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", limit=5)
        assert data.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in data.lower(), data[:200]
        for sock in held[:5]:
            sock.close()
        time.sleep(0.3)
        data, _ = _send_and_read(proc, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", limit=5)
        assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    finally:
        for sock in held:
            sock.close()
        proc.stop()


def test_refusals_are_counted_on_metrics(sidecar):
    _send_and_read(sidecar, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert httpx.get(sidecar.url + "/v1/orders").status_code == 401
    text = httpx.get(sidecar.url + "/metrics", timeout=10).text
    assert 'wojak_sidecar_http_refused_total{reason="431"}' in text
    assert 'wojak_sidecar_http_refused_total{reason="401"}' in text
