from __future__ import annotations

from decimal import Decimal

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wojak.engine.protocol import (
    PROTOCOL_VERSION,
    MessageType,
    ProtocolError,
    Settlement,
    Verdict,
    decode_frames,
    encode_frames,
    settlement_for,
)

bodies = st.dictionaries(
    st.text(max_size=10),
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    max_size=6,
)


@given(st.sampled_from(list(MessageType)), bodies)
def test_round_trip(kind, body):
    assert decode_frames(encode_frames(kind, body)) == (kind, body)


def test_decimals_travel_as_strings():
    _, body = decode_frames(encode_frames(MessageType.TICK, {"last": Decimal("24000.50")}))
    assert body == {"last": "24000.50"}


def test_floats_and_objects_do_not_encode_silently():
    with pytest.raises(TypeError):
        encode_frames(MessageType.TICK, {"x": object()})


@pytest.mark.parametrize(
    "frames, message",
    [
        ([PROTOCOL_VERSION, b"ping"], "expected 3 frames"),
        ([b"\x02", b"ping", msgpack.packb({})], "unsupported protocol version"),
        ([PROTOCOL_VERSION, b"launch_missiles", msgpack.packb({})], "unknown message type"),
        ([PROTOCOL_VERSION, b"ping", b"\xc1"], "not valid msgpack"),
        ([PROTOCOL_VERSION, b"ping", msgpack.packb([1, 2])], "must be a map"),
        ([PROTOCOL_VERSION, b"ping", msgpack.packb({1: 2})], "not valid msgpack"),
    ],
)
def test_malformed_frames_raise_protocol_error(frames, message):
    with pytest.raises(ProtocolError, match=message):
        decode_frames(frames)


@given(st.lists(st.binary(max_size=40), max_size=5))
def test_arbitrary_frames_never_raise_anything_else(frames):
    try:
        decode_frames(frames)
    except ProtocolError:
        pass


def test_verdict_to_settlement_table_matches_design():
    ack = {Verdict.FILLED, Verdict.PARTIALLY_FILLED, Verdict.ACCEPTED, Verdict.ESCALATED, Verdict.DUPLICATE}
    for v in ack:
        assert settlement_for(v) is Settlement.ACK
    assert settlement_for(Verdict.REJECTED) is Settlement.ACK_AND_PUBLISH
    assert settlement_for(Verdict.DENIED) is Settlement.ACK_AND_PUBLISH
    assert settlement_for(Verdict.CONFLICT) is Settlement.DEAD_LETTER
    assert settlement_for(Verdict.INVALID) is Settlement.DEAD_LETTER
    assert settlement_for(Verdict.RETRY) is Settlement.REQUEUE
    assert settlement_for("something-new") is Settlement.REQUEUE  # fail closed
