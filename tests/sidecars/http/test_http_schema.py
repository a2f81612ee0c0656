"""The published request schemas agree with the validator: every example the OpenAPI schema
accepts, validate_order accepts, and every one it refuses, validate_order refuses.

Two readings make JSON Schema mean what the JSON on the wire means, as a client's JSON
Schema library does: patterns are ECMA-262 (``$`` is the very end, not "before a final
newline" as in Python's ``re.search``), and an integer is a JSON number written without a
fraction or exponent (``json`` parses ``1.0`` to a float, which the validator refuses)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wojak.engine.protocol import DECIMAL_PATTERN, ORDER_FIELDS, validate_order, validate_tick
from wojak.sidecars.http import HttpSidecarSettings, create_app


def _published() -> dict[str, Any]:
    app = create_app(HttpSidecarSettings(engine_socket="/nonexistent/engine.sock", api_keys=("k" * 16,), dev=True))

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak") as client:
            r = await client.get("/openapi.json")  # no key needed
            assert r.status_code == 200
            return r.json()

    return asyncio.run(fetch())


SPEC = _published()
ORDER_SCHEMA = SPEC["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
TICK_SCHEMA = SPEC["paths"]["/v1/ticks"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and not _ecma(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern[:80]!r}")


_Base = jsonschema.Draft202012Validator
_types = _Base.TYPE_CHECKER.redefine("integer", lambda checker, v: isinstance(v, int) and not isinstance(v, bool))
Validator = jsonschema.validators.extend(_Base, validators={"pattern": _pattern}, type_checker=_types)
ORDERS = Validator(ORDER_SCHEMA)
TICKS = Validator(TICK_SCHEMA)


def test_the_published_schema_is_built_from_the_validators_rules():
    _Base.check_schema(ORDER_SCHEMA)
    assert list(ORDER_SCHEMA["properties"]) == list(ORDER_FIELDS) and ORDER_SCHEMA["additionalProperties"] is False
    quantity = ORDER_SCHEMA["properties"]["quantity"]["oneOf"][0]
    assert {"pattern": DECIMAL_PATTERN} in quantity["allOf"]
    assert SPEC["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer",
                                                              "description": "Authorization: Bearer <API key>"}  # fmt: skip
    assert {"bearer": []} in SPEC["security"]


def _agree(body: Any) -> None:
    schema_ok = ORDERS.is_valid(body)
    # the body may leave client_order_id to the Idempotency-Key header
    as_sent = {**body, "client_order_id": "from-header"} if isinstance(body, dict) and "client_order_id" not in body else body
    order, errors = validate_order(as_sent)
    assert schema_ok == (order is not None), (body, schema_ok, errors, list(ORDERS.iter_errors(body))[:2])


# -- examples ---------------------------------------------------------------------------

BASE = {"client_order_id": "c-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50",
        "order_type": "limit", "limit_price": "24000"}  # fmt: skip
DECIMALS = ["1", "50", "0.5", "0.00000001", "0.000000001", "0.10000000000", "1.123456780", "1.1234567890", "1.",
            ".5", "0", "0.0", "00", "05", "+5", "-5", "5e3", "1" * 12, "1" * 13, "1" * 12 + ".5", "1" * 12 + "." + "0" * 52,
            "1." + "0" * 62, "1." + "0" * 63, "NaN", "Infinity", " 5", "5 ", "5\n", "\u0665", "\uff15", "١٢", "", "0.1e1",
            "999999999999.99999999", 1, 0, -1, 10**11, 10**12 - 1, 10**12, 1.0, 1.5, True, None, [], {}]  # fmt: skip
TEXTS = ["desk-1", "", "x" * 64, "x" * 65, "a b", "a\n", "\n", "dësk", "desk_1.2:3", "a/b", "NIFTY&FUT", "ｘ", 5, None]
TAGS = ["", "note", "x" * 128, "x" * 129, "tab\t", "new\nline", "\x7f", "\u00a0", "\u200b", "é", "\U0001f600", "\ue000",
        "\U000e0001", "\u0378", " ", "a b", 7, None, "\u2028"]  # fmt: skip


def test_examples_at_every_boundary_agree():
    cases: list[Any] = [BASE, {}, [], "order", None, 5]
    for field in ("quantity", "limit_price"):
        cases += [{**BASE, field: v} for v in DECIMALS]
    for field in ("client_order_id", "account", "symbol"):
        cases += [{**BASE, field: v} for v in TEXTS]
    cases += [{**BASE, "tag": v} for v in TAGS]
    for field, values in (("side", ["buy", "sell", "BUY", "", None, 1]), ("order_type", ["market", "limit", "stop", None]),
                          ("time_in_force", ["day", "ioc", "gtc", "fok", None, ""])):  # fmt: skip
        cases += [{**BASE, field: v} for v in values]
    market = {**BASE, "order_type": "market"}
    cases += [market, {**market, "limit_price": None}, {k: v for k, v in market.items() if k != "limit_price"},
              {k: v for k, v in BASE.items() if k != "limit_price"}, {**BASE, "limit_price": None},
              {k: v for k, v in BASE.items() if k != "client_order_id"}, {**BASE, "client_order_id": None},
              {**BASE, "extra": 1}, {**BASE, "tag": None, "time_in_force": None}]  # fmt: skip
    for field in BASE:
        cases.append({k: v for k, v in BASE.items() if k != field})
    for body in cases:
        _agree(body)


# -- generated --------------------------------------------------------------------------

_chars = st.characters(codec="utf-8") | st.sampled_from("0123456789.+-eE \n\t\u0665\uff15\x7f\u00a0")
decimal_text = st.one_of(
    st.from_regex(r"[+-]?[0-9]{0,14}(\.[0-9]{0,12})?", fullmatch=True),
    st.builds(lambda w, z, f, tz: f"{w}.{f}{'0' * tz}", st.integers(0, 10**13), st.integers(0, 3), st.text("0123456789", max_size=10),
              st.integers(0, 60)),  # fmt: skip
    st.text(_chars, max_size=8),
)
decimal_value = decimal_text | st.integers(-(10**13), 10**13) | st.floats(allow_nan=False) | st.none() | st.booleans()
text_value = st.from_regex(r"[A-Za-z0-9._:&/ -]{0,66}", fullmatch=True) | st.text(_chars, max_size=70) | st.none() | st.integers()
tag_value = st.text(st.characters(codec="utf-8"), max_size=140) | st.none() | st.integers()
field_values = {
    "client_order_id": text_value, "account": text_value, "symbol": text_value,
    "side": st.sampled_from(["buy", "sell", "hold", None, 1]), "quantity": decimal_value,
    "order_type": st.sampled_from(["market", "limit", "stop", None]), "limit_price": decimal_value,
    "time_in_force": st.sampled_from(["day", "ioc", "gtc", "fok", None]), "tag": tag_value,
}  # fmt: skip


@st.composite
def bodies(draw: Any) -> dict[str, Any]:
    body = dict(BASE)
    for field in draw(st.lists(st.sampled_from([*ORDER_FIELDS, "extra"]), max_size=3, unique=True)):
        if draw(st.booleans()) and field in body:
            del body[field]
        else:
            body[field] = draw(field_values.get(field, st.integers()))
    return body


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_generated_orders_agree(body):
    _agree(body)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["symbol", "bid", "ask", "last", "sequence", "exchange_time", "x"]),
                       decimal_value | text_value | st.integers(-1, 2**64), max_size=7))  # fmt: skip
def test_generated_ticks_agree_except_a_crossed_quote(raw):
    tick = {"symbol": "NIFTY-FUT", "bid": "1", "ask": "2", "last": "1", **raw}
    valid, errors = validate_tick(tick)
    if valid is not None:
        assert TICKS.is_valid(tick), tick
    elif TICKS.is_valid(tick):  # the one rule JSON Schema cannot state: bid <= ask (documented in the schema)
        assert [e.code for e in errors] == ["crossed_quote"], (tick, errors)


def test_the_json_of_the_schema_is_plain_json():
    json.loads(json.dumps(SPEC))  # no NaN, no bytes: any client can load it


def test_docs_are_served_locally_without_a_key():
    app = create_app(HttpSidecarSettings(engine_socket="/nonexistent/engine.sock", api_keys=("k" * 16,), dev=True))

    async def fetch() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wojak") as client:
            page = await client.get("/docs")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            refs = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
            assert refs and all(ref.startswith("/") for ref in refs), refs  # nothing from a CDN
            types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
            for ref in refs:
                r = await client.get(ref)
                assert r.status_code == 200 and len(r.content) > 100, ref
                assert types[ref[ref.rindex("."):]] in r.headers["content-type"], (ref, r.headers["content-type"])
            assert b"SwaggerUIBundle" in (await client.get("/docs/swagger-ui-bundle.js")).content
            assert (await client.get("/docs/../keys.yaml")).status_code in (401, 404)
            assert (await client.get("/docs/index.html")).status_code == 404  # only the assets the page uses
            assert (await client.get("/v1/orders")).status_code == 401  # the API itself still needs a key

    asyncio.run(fetch())
