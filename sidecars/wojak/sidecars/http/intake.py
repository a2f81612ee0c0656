"""Reading a request body strictly: JSON in UTF-8, every key once, no lone surrogates.

Python's own ``json`` (and most JSON libraries) keep the last of two equal keys, accept
``"\\ud800"`` (a lone UTF-16 surrogate: not a Unicode character, and unencodable as UTF-8)
and guess UTF-16/32 from the first bytes. An order that says ``"quantity": "50"`` and then
``"quantity": "75"`` must not mean whichever one a parser keeps, so each of these is refused
here, naming the key, before validation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from wojak.errors import WojakError

JSON_MEDIA_TYPE = "application/json"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # only a body with one of these can hold a surrogate
_SURROGATE = re.compile("[\ud800-\udfff]")
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff")


class BodyError(WojakError):
    """A body refused before validation: ``status`` (415 or 422) and the FastAPI-style detail items."""

    def __init__(self, status: int, detail: list[dict[str, Any]] | str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _item(kind: str, msg: str, *loc: str) -> dict[str, Any]:
    return {"type": kind, "loc": ["body", *loc], "msg": msg}


def check_media_type(content_type: bytes | None) -> str | None:
    """None if ``content_type`` is ``application/json`` (optionally ``; charset=utf-8``), else why not."""
    if content_type is None:
        return "Content-Type is missing: send Content-Type: application/json"
    try:
        text = content_type.decode("ascii")
    except UnicodeDecodeError:
        return "Content-Type is not ASCII"
    media, *params = text.split(";")
    if media.strip().lower() != JSON_MEDIA_TYPE:
        return f"Content-Type {media.strip()[:64]!r} is not supported: send application/json (UTF-8)"
    for param in params:
        name, _, value = param.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"').lower()
        if not name and not value:
            continue
        if name != "charset":
            return f"Content-Type parameter {name[:32]!r} is not supported: only charset=utf-8"
        if value not in ("utf-8", "utf8"):
            return f"charset {value[:32]!r} is not supported: JSON bodies must be UTF-8"
    return None


# Keys seen twice in the body being parsed. Parsing is synchronous (no await), so one list
# for the process is safe; it saves building a decoder per request.
_duplicates: list[str] = []


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(items)
    if len(result) != len(items):
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and key not in _duplicates:
                _duplicates.append(key)
            seen.add(key)
    return result


_decoder = json.JSONDecoder(object_pairs_hook=_pairs)


def _lone_surrogates(value: Any, path: tuple[str, ...], found: list[tuple[str, ...]]) -> None:
    """Paths (top-level key first) of every string or key holding a lone surrogate."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                found.append(path + (printable(key),))
            else:
                _lone_surrogates(item, path + (key,), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _lone_surrogates(item, path + (str(index),), found)


def parse_json_body(body: bytes) -> Any:
    """The JSON value of ``body``; raises ``BodyError`` (415 for another encoding, else 422)."""
    if body.startswith(_UTF16_32_BOMS) or (len(body) >= 2 and (body[0] == 0 or body[1] == 0)):
        raise BodyError(415, "the body is not UTF-8 (UTF-16 or UTF-32?): JSON bodies must be UTF-8")
    if body.startswith(_UTF8_BOM):
        raise BodyError(422, [_item("json_invalid", "the body starts with a byte-order mark: send UTF-8 without one")])
    try:
        text = body.decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates
    except UnicodeDecodeError as exc:
        raise BodyError(422, [_item("json_invalid", f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})")]) from None
    _duplicates.clear()
    try:
        data = _decoder.decode(text)
    except (ValueError, RecursionError) as exc:
        raise BodyError(422, [_item("json_invalid", f"invalid JSON: {exc}")]) from None
    duplicates = _duplicates[:]
    errors: list[dict[str, Any]] = []
    if _SURROGATE_ESCAPE.search(text):
        found: list[tuple[str, ...]] = []
        _lone_surrogates(data, (), found)
        for path in found:
            where = [printable(p) for p in path[:1]]
            errors.append(
                _item("string_unicode", "holds a lone UTF-16 surrogate (\\ud800-\\udfff): not a Unicode character", *where)
            )
    for key in duplicates:
        errors.append(_item("duplicate_key", f"the key {printable(key)!r} appears more than once in one object", printable(key)))
    if errors:
        raise BodyError(422, errors)
    return data


def printable(text: str) -> str:
    """``text`` made safe to put in a reply: lone surrogates (and only they) become ``\\udXXX`` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return printable(repr(value))


def dumps(payload: Any) -> bytes:
    """orjson, and when a value cannot be encoded (a lone surrogate, say), the same payload made encodable."""
    try:
        return orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(_safe(payload))
