"""The body rules of the HTTP intake (wojak/sidecars/http/intake.py), without processes."""

from __future__ import annotations

import orjson
import pytest

from wojak.sidecars.http.intake import BodyError, check_media_type, dumps, parse_json_body


@pytest.mark.parametrize("raw, status, kind, loc", [
    (b'{"a": 1, "a": 2}', 422, "duplicate_key", ["body", "a"]),
    (b'{"a": {"b": 1, "b": 1}}', 422, "duplicate_key", ["body", "b"]),
    (b'{"a": "\\ud800"}', 422, "string_unicode", ["body", "a"]),
    (b'{"a": ["x", {"b": "\\udfff"}]}', 422, "string_unicode", ["body", "a"]),
    (b'{"\\ud800": 1}', 422, "string_unicode", ["body", "\\ud800"]),
    (b'["\\udc00\\ud800"]', 422, "string_unicode", ["body", "0"]),
    (b'"\\ud83d"', 422, "string_unicode", ["body"]),
    (b"\xef\xbb\xbf{}", 422, "json_invalid", ["body"]),
    (b'{"a": "\xed\xa0\x80"}', 422, "json_invalid", ["body"]),  # a surrogate as UTF-8 bytes
    (b'{"a": "\xff"}', 422, "json_invalid", ["body"]),
    (b"{", 422, "json_invalid", ["body"]),
    (b"[" * 100_000, 422, "json_invalid", ["body"]),  # too deep: a refusal, not a crash
])  # fmt: skip
def test_refusals_name_what_and_where(raw, status, kind, loc):
    with pytest.raises(BodyError) as refused:
        parse_json_body(raw)
    assert refused.value.status == status
    assert {"type": kind, "loc": loc} in [{"type": d["type"], "loc": d["loc"]} for d in refused.value.detail], refused.value.detail
    orjson.loads(dumps({"detail": refused.value.detail}))  # the reply is always strict JSON


@pytest.mark.parametrize("raw", ['{"a":1}'.encode("utf-16"), '{"a":1}'.encode("utf-16-le"), '{"a":1}'.encode("utf-16-be"),
                                 '{"a":1}'.encode("utf-32"), '{"a":1}'.encode("utf-32-le")])  # fmt: skip
def test_utf16_and_utf32_are_415(raw):
    with pytest.raises(BodyError) as refused:
        parse_json_body(raw)
    assert refused.value.status == 415


def test_what_is_accepted():
    assert parse_json_body(b' {"a": "\\ud83d\\ude00", "b": [1, 2], "n": 100000000000000000000001} ') == {
        "a": "\U0001f600", "b": [1, 2], "n": 100000000000000000000001}  # fmt: skip
    assert parse_json_body('{"t": "ॐ ٥ ５"}'.encode()) == {"t": "ॐ ٥ ５"}  # any text is fine; decimals are checked later
    nan = parse_json_body(b'{"q": NaN}')["q"]
    assert nan != nan  # left to the validator, which names the field (finite_number)
    # the duplicate list is per call: a refused body does not leak into the next one
    with pytest.raises(BodyError):
        parse_json_body(b'{"a": 1, "a": 2}')
    assert parse_json_body(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("value, ok", [
    (b"application/json", True), (b"application/json; charset=utf-8", True), (b"Application/JSON;Charset=\"UTF-8\"", True),
    (b"application/json;", True), (b"application/json; charset=utf8", True),
    (None, False), (b"", False), (b"text/plain", False), (b"application/json; charset=utf-16", False),
    (b"application/json; charset=latin-1", False), (b"application/json; boundary=x", False), (b"application/jsonx", False),
    (b"application/x-www-form-urlencoded", False), (b"application/json\xff", False), (b"multipart/form-data", False),
])  # fmt: skip
def test_media_types(value, ok):
    assert (check_media_type(value) is None) is ok


@pytest.mark.parametrize("value, why", [
    # a parameter needs a name and a value: a name alone, or a value alone, is refused
    (b"application/json; charset", "charset '' is not supported: JSON bodies must be UTF-8"),
    (b"application/json; =utf-8", "Content-Type parameter '' is not supported: only charset=utf-8"),
    # an empty parameter is skipped, and the ones after it are still checked
    (b"application/json;; charset=latin-1", "charset 'latin-1' is not supported: JSON bodies must be UTF-8"),
    (b"application/json; ; boundary=x", "Content-Type parameter 'boundary' is not supported: only charset=utf-8"),
    # only double quotes are taken off a value, and the value is split at its first "="
    (b"application/json; charset=Xutf-8X", "charset 'xutf-8x' is not supported: JSON bodies must be UTF-8"),
    (b"application/json; charset=utf-8=x", "charset 'utf-8=x' is not supported: JSON bodies must be UTF-8"),
])  # fmt: skip
def test_every_media_type_parameter_is_checked_and_the_refusal_names_it(value, why):
    assert check_media_type(value) == why


def test_a_reply_is_always_encodable():
    bad = {"detail": [{"loc": ["body", "\ud800"], "input": "a\udfffb", "n": 1, "x": None, "t": True, "l": [b"raw"]}]}
    out = orjson.loads(dumps(bad))
    assert out["detail"][0]["loc"] == ["body", "\\ud800"] and out["detail"][0]["input"] == "a\\udfffb"
    assert dumps({"ok": "fine"}) == b'{"ok":"fine"}'


@pytest.mark.parametrize("body", [b"1\x00", b"\x001"])
def test_a_two_byte_body_with_a_zero_byte_is_utf16_or_32_and_415(body):
    with pytest.raises(BodyError) as refused:
        parse_json_body(body)
    assert refused.value.status == 415
