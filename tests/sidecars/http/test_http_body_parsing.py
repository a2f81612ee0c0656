"""Reading a request body strictly (wojak/sidecars/http/intake.py), case by case: the status
and the detail each refusal gets, and what passes."""

from __future__ import annotations

import pytest

from wojak.sidecars.http.intake import BodyError, check_media_type, dumps, parse_json_body, printable


def refused(body: bytes) -> tuple[int, object]:
    with pytest.raises(BodyError) as info:
        parse_json_body(body)
    return info.value.status, info.value.detail


def test_plain_json_passes():
    assert parse_json_body(b'{"a": [1, "x", {"b": null}]}') == {"a": [1, "x", {"b": None}]}
    assert parse_json_body(b"5") == 5
    assert parse_json_body('{"s": "\\ud83d\\ude00 é"}'.encode()) == {"s": "\U0001f600 é"}  # a surrogate *pair* is fine


@pytest.mark.parametrize("body", [b"\xff\xfe{\x00}\x00", b"\xfe\xff\x00{\x00}", b'\x00{"a":1}', b'{\x00"a":1}'])
def test_utf16_or_32_is_415(body):
    status, detail = refused(body)
    assert status == 415 and detail == "the body is not UTF-8 (UTF-16 or UTF-32?): JSON bodies must be UTF-8"


def test_a_byte_order_mark_is_422():
    assert refused(b'\xef\xbb\xbf{"a": 1}') == (422, [{"type": "json_invalid", "loc": ["body"],
                                                     "msg": "the body starts with a byte-order mark: send UTF-8 without one"}])  # fmt: skip


def test_invalid_utf8_is_422_naming_the_byte():
    assert refused(b'{"a": "\xc3("}') == (422, [{"type": "json_invalid", "loc": ["body"],
                                                 "msg": "the body is not valid UTF-8 (invalid continuation byte at byte 7)"}])  # fmt: skip


def test_invalid_json_is_422():
    status, [item] = refused(b'{"a": }')
    assert status == 422 and item["type"] == "json_invalid" and item["msg"].startswith("invalid JSON: ")
    assert refused(b"[" * 100_000)[0] == 422  # too deep: not a crash


def test_a_key_given_twice_is_422_naming_it_once():
    status, detail = refused(b'{"quantity": "50", "quantity": "75", "side": "buy", "quantity": "1"}')
    assert status == 422
    assert detail == [{"type": "duplicate_key", "loc": ["body", "quantity"],
                       "msg": "the key 'quantity' appears more than once in one object"}]  # fmt: skip
    # in a nested object too; and the next body starts clean
    assert refused(b'{"a": {"b": 1, "b": 2}}')[1][0]["loc"] == ["body", "b"]
    assert parse_json_body(b'{"b": 1}') == {"b": 1}


def test_a_lone_surrogate_is_422_naming_the_top_level_field():
    status, detail = refused(b'{"tag": "x\\ud800y", "ok": "fine"}')
    assert status == 422
    assert detail == [{"type": "string_unicode", "loc": ["body", "tag"],
                       "msg": "holds a lone UTF-16 surrogate (\\ud800-\\udfff): not a Unicode character"}]  # fmt: skip
    assert refused(b'{"a": {"b": ["\\udc00"]}}')[1][0]["loc"] == ["body", "a"]
    assert refused(b'{"\\udfff": 1}')[1][0]["loc"] == ["body", "\\udfff"]
    assert refused(b'["x", "\\ud800"]')[1][0]["loc"] == ["body", "1"]  # a top-level list: the index


@pytest.mark.parametrize("value, why", [
    (None, "Content-Type is missing: send Content-Type: application/json"),
    (b"text/plain", "Content-Type 'text/plain' is not supported: send application/json (UTF-8)"),
    (b"application/json; charset=latin-1", "charset 'latin-1' is not supported: JSON bodies must be UTF-8"),
    (b"application/json; boundary=x", "Content-Type parameter 'boundary' is not supported: only charset=utf-8"),
    ("application/json; charset=\u00e9".encode("latin-1"), "Content-Type is not ASCII"),
])  # fmt: skip
def test_media_types_refused_with_the_reason(value, why):
    assert check_media_type(value) == why


@pytest.mark.parametrize("value", [b"application/json", b"APPLICATION/JSON", b" application/json ; charset=UTF-8",
                                   b'application/json;charset="utf8"', b"application/json;", b"application/json; ;"])  # fmt: skip
def test_media_types_accepted(value):
    assert check_media_type(value) is None


def test_replies_are_encodable_whatever_they_hold():
    assert printable("ok é") == "ok é"
    assert printable("a\ud800b") == "a\\ud800b"
    assert dumps({"a": "x"}) == b'{"a":"x"}'
    assert dumps({"a": "\ud800", "\udc00": ["\ud801", 1, 2.5, True, None, b"raw"]}) == (
        b'{"a":"\\\\ud800","\\\\udc00":["\\\\ud801",1,2.5,true,null,"b\'raw\'"]}')
