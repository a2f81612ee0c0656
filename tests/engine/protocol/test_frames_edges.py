"""Framing details the round-trip properties do not pin down: what an unencodable value and
a malformed body are called, byte strings and text staying apart, the message-type cut in
an error, and where the engine's socket is by default."""

from __future__ import annotations

import os

import msgpack
import pytest

from wojak.engine.protocol import MessageType, ProtocolError, decode_body, decode_frames, default_socket_path, encode_body
from wojak.engine.protocol._frames import PROTOCOL_VERSION


def test_an_unencodable_value_names_its_type():
    with pytest.raises(TypeError, match="^cannot encode set on the wire$"):
        encode_body({"x": {1}})
    with pytest.raises(TypeError, match="^cannot encode object on the wire$"):
        encode_body({"x": object()})


def test_a_body_that_is_not_a_map_is_named():
    with pytest.raises(ProtocolError, match="^body must be a map$"):
        decode_body(msgpack.packb([1, 2]))


def test_text_stays_text_and_bytes_stay_bytes():
    body = decode_body(msgpack.packb({"s": "é", "b": b"\xff\x00"}, use_bin_type=True))
    assert body == {"s": "é", "b": b"\xff\x00"} and isinstance(body["s"], str)
    # a map key that is not a string (or bytes) is refused, not coerced
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        decode_body(msgpack.packb({1: "x"}))


def test_an_unknown_type_is_shown_cut_to_32_bytes():
    kind = b"k" * 40
    with pytest.raises(ProtocolError) as info:
        decode_frames([PROTOCOL_VERSION, kind, encode_body({})])
    assert str(info.value) == f"unknown message type {kind[:32]!r}"
    assert decode_frames([PROTOCOL_VERSION, MessageType.PING.value, encode_body({})]) == (MessageType.PING, {})


def test_the_default_socket_is_in_the_users_runtime_directory(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert default_socket_path() == "/run/user/1234/wojak/engine.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == f"/tmp/wojak-{os.getuid()}/engine.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")
    assert default_socket_path() == f"/tmp/wojak-{os.getuid()}/engine.sock"
