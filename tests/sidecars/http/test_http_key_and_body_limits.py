"""The HTTP intake's API keys and body limit, stated at their edges.

The app is built the way ``wojak sidecar http`` builds it (``HttpSidecarSettings`` from
the environment, then ``create_app``) and called in process over ASGI, with an engine
client that answers ``filled``: what is checked is the intake, before any engine.

* Keys, in both forms (``WOJAK_API_KEYS_FILE`` with SHA-256 entries, and the development
  ``WOJAK_API_KEYS``): only the exact key gets in. A wrong key that shares all but its last
  character with a right one, the right key with a character more or less, its first 8 or
  16 characters, keys of other lengths: 401. A keys-file entry whose hash shares 31 of its
  32 bytes with the presented key's hash does not let that key in either.
* Body: the default limit is 64 KiB (65,536 bytes). A body of exactly that many bytes is
  read, one byte more is 413, with a Content-Length and chunked (no Content-Length, the
  body in pieces) alike; a 60 KiB order is accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from wojak.engine.protocol import Principal
from wojak.sidecars.http import create_app
from wojak.sidecars.http.config import HttpSidecarSettings

KIB = 1024
LIMIT = 64 * KIB
RIGHT = "wjk_right-key-0123456789abcdefghijklmnopqrstuvwxyz"
OTHER = "wjk_other-key-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210"
ORDER = {"client_order_id": "k-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "1",
         "order_type": "limit", "limit_price": "24000"}  # fmt: skip


def wrong_keys(right: str) -> dict[str, str]:
    last = "A" if right[-1] != "A" else "B"
    return {
        "all but the last character": right[:-1] + last,
        "all but the first character": ("X" if right[0] != "X" else "Y") + right[1:],
        "one character more": right + "0",
        "one character less": right[:-1],
        "the first 8 characters": right[:8],
        "the first 16 characters": right[:16],
        "the first 8 characters, then other text": right[:8] + "z" * (len(right) - 8),
        "the key twice": right * 2,
        "upper case": right.upper(),
        "16 characters": "q" * 16,
        "64 characters": "q" * 64,
        "200 characters": right[:40] + "q" * 160,
        "another principal's key with this one's prefix": right[:24] + OTHER[24:],
    }


class Engine:
    """The engine client the routes call: answers every order ``filled`` and records it."""

    def __init__(self) -> None:
        self.orders: list[tuple[dict[str, Any], Principal]] = []

    def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def submit_order(self, order: dict[str, Any], principal: Principal, *args: Any, **kw: Any) -> dict[str, Any]:
        self.orders.append((order, principal))
        return {"verdict": "filled", "client_order_id": order["client_order_id"], "order": {**order, "state": "filled"}}


async def call(app: Any, headers: dict[str, str], body: bytes = b"", *, chunks: list[bytes] | None = None,
               method: str = "POST", path: str = "/v1/orders") -> tuple[int, bytes]:  # fmt: skip
    """One request through the ASGI app; ``chunks``: the body in pieces, without a Content-Length."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if chunks is None:
        raw_headers.append((b"content-length", str(len(body)).encode()))
        pieces = [body]
    else:
        pieces = chunks
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw_headers,
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}  # fmt: skip
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(5)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def json_headers(key: str, how: str = "bearer") -> dict[str, str]:
    auth = {"Authorization": f"Bearer {key}"} if how == "bearer" else {"X-API-Key": key}
    return {**auth, "Content-Type": "application/json"}


def keys_file(tmp_path, *entries: tuple[str, str]) -> str:
    """A keys file of (name, key_sha256) entries, every account and scope."""
    lines = ["principals:"]
    for name, digest in entries:
        lines += [f"  - name: {name}", f'    key_sha256: "{digest}"', '    accounts: ["*"]',
                  "    scopes: [orders:write, orders:read, ticks:write]"]  # fmt: skip
    path = tmp_path / "keys.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(params=["keys_file", "dev_keys"])
def app_and_engine(request, tmp_path, monkeypatch):
    """The app as ``wojak sidecar http`` builds it from its environment, with RIGHT and OTHER as keys."""
    for name in ("WOJAK_API_KEYS", "WOJAK_API_KEYS_FILE", "WOJAK_SIDECAR_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "keys_file":
        monkeypatch.setenv("WOJAK_API_KEYS_FILE", keys_file(tmp_path, ("right", sha(RIGHT)), ("other", sha(OTHER))))
    else:
        monkeypatch.setenv("WOJAK_API_KEYS", f"{RIGHT},{OTHER}")
    monkeypatch.setenv("WOJAK_DEV", "1")
    config = HttpSidecarSettings().to_config()
    engine = Engine()
    return create_app(config, client=engine), engine  # type: ignore[arg-type]


def order_body(**extra: Any) -> bytes:
    return json.dumps({**ORDER, **extra}).encode()


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bearer", "x-api-key"])
async def test_the_right_keys_get_in(app_and_engine, how):
    app, engine = app_and_engine
    for key in (RIGHT, OTHER):
        status, body = await call(app, json_headers(key, how), order_body())
        assert status == 200 and json.loads(body)["verdict"] == "filled", body
    assert len(engine.orders) == 2


@pytest.mark.parametrize("how", ["bearer", "x-api-key"])
@pytest.mark.parametrize("what", sorted(wrong_keys(RIGHT)))
async def test_a_wrong_key_is_refused_however_much_of_a_right_one_it_shares(app_and_engine, how, what):
    app, engine = app_and_engine
    wrong = wrong_keys(RIGHT)[what]
    assert wrong not in (RIGHT, OTHER)
    status, body = await call(app, json_headers(wrong, how), order_body())
    assert status == 401, (what, body)
    assert engine.orders == []


async def test_no_key_an_empty_key_or_two_different_keys_are_refused(app_and_engine):
    app, engine = app_and_engine
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": RIGHT}, {"X-API-Key": ""},
                    {"Authorization": f"Bearer {RIGHT}", "X-API-Key": OTHER}):  # fmt: skip
        status, _ = await call(app, {**headers, "Content-Type": "application/json"}, order_body())
        assert status == 401, headers
    assert engine.orders == []


async def test_a_stored_hash_sharing_all_but_its_last_byte_with_the_keys_hash_does_not_let_it_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WOJAK_API_KEYS", raising=False)
    near = bytearray(hashlib.sha256(RIGHT.encode()).digest())
    near[-1] ^= 0x01
    monkeypatch.setenv("WOJAK_API_KEYS_FILE", keys_file(tmp_path, ("near", near.hex()), ("other", sha(OTHER))))
    engine = Engine()
    app = create_app(HttpSidecarSettings().to_config(), client=engine)  # type: ignore[arg-type]
    assert (await call(app, json_headers(RIGHT), order_body()))[0] == 401
    assert (await call(app, json_headers(OTHER), order_body()))[0] == 200
    assert [p.name for _, p in engine.orders] == ["other"]


async def test_each_key_acts_as_its_own_principal(tmp_path, monkeypatch):
    monkeypatch.delenv("WOJAK_API_KEYS", raising=False)
    monkeypatch.setenv("WOJAK_API_KEYS_FILE", keys_file(tmp_path, ("right", sha(RIGHT)), ("other", sha(OTHER))))
    engine = Engine()
    app = create_app(HttpSidecarSettings().to_config(), client=engine)  # type: ignore[arg-type]
    for key in (OTHER, RIGHT):
        assert (await call(app, json_headers(key), order_body()))[0] == 200
    assert [p.name for _, p in engine.orders] == ["other", "right"]


# -- the body limit --------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid order of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    body = order_body()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def in_pieces(body: bytes, n: int = 7) -> list[bytes]:
    step = max(1, len(body) // n)
    return [body[i : i + step] for i in range(0, len(body), step)]


def test_the_default_body_limit_is_64_KiB(monkeypatch):
    monkeypatch.delenv("WOJAK_SIDECAR_MAX_BODY_BYTES", raising=False)
    monkeypatch.setenv("WOJAK_API_KEYS", RIGHT)
    assert HttpSidecarSettings().to_config().max_body_bytes == LIMIT == 65_536
    assert HttpSidecarSettings(engine_socket="x").max_body_bytes == LIMIT


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(app_and_engine, chunked):
    app, engine = app_and_engine
    for size, expected in ((60 * KIB, 200), (LIMIT - 1, 200), (LIMIT, 200), (LIMIT + 1, 413), (LIMIT + 4 * KIB, 413)):
        body = padded(size)
        assert len(body) == size
        if chunked:
            status, reply = await call(app, json_headers(RIGHT), chunks=in_pieces(body))
        else:
            status, reply = await call(app, json_headers(RIGHT), body)
        assert status == expected, (size, reply[:200])
        if expected == 413:
            assert "65536" in json.loads(reply)["detail"]
    assert len(engine.orders) == 3


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(app_and_engine):
    app, engine = app_and_engine
    headers = {**json_headers(RIGHT), "Content-Length": str(LIMIT + 1)}
    # the body never arrives: the declared length alone decides
    status, _ = await call(app, headers, chunks=[b""])
    assert status == 413
    headers = {**json_headers(RIGHT), "Content-Length": str(LIMIT)}
    status, _ = await call(app, headers, chunks=[padded(LIMIT)])
    assert status == 200


async def test_the_limit_counts_bytes_not_characters(app_and_engine):
    app, _ = app_and_engine
    text = json.dumps({**ORDER, "tag": "\u00e9" * 40_000}, ensure_ascii=False)  # 2 bytes each in UTF-8
    assert len(text) <= LIMIT < len(text.encode())
    status, _ = await call(app, json_headers(RIGHT), text.encode())
    assert status == 413
