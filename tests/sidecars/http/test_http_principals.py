"""API keys stand for principals (keys file): scopes and accounts, enforced end to end.

A real engine and a real HTTP sidecar reading a keys file (WOJAK_API_KEYS_FILE)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx
import pytest

from tests._processes import API_KEY, HttpSidecarProcess
from tests.sidecars.http._keys import (
    TICK,
    audit_rows,
    auth,
    entry,
    executions,
    key_for,
    order,
    start_sidecar,
    stored_orders,
    wait_for,
    write_keys,
)

PRINCIPALS = [
    entry("desk-1-algo", ["desk-1"], ["orders:write", "orders:read"]),
    entry("desk-2-algo", ["desk-2"], ["orders:write", "orders:read"]),
    entry("desk-1-reader", ["desk-1"], ["orders:read"]),
    entry("md-feed", None, ["ticks:write"]),
    entry("ops", ["desk-1", "desk-2*"], ["orders:read"]),
]


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys.yaml"
    write_keys(path, PRINCIPALS)
    return path


@pytest.fixture
def sidecar(engine, keys_file):
    proc = start_sidecar(engine, keys_file)
    yield proc
    proc.stop()


@pytest.fixture
def http(sidecar):
    with httpx.Client(base_url=sidecar.url, timeout=10) as client:
        assert client.post("/v1/ticks", json=TICK, headers=auth("md-feed")).status_code == 200
        yield client


def _no_order_in(response: httpx.Response) -> None:
    body = response.json()
    assert "order" not in body and "orders" not in body, body


def test_two_desks_cannot_trade_read_cancel_list_or_learn_about_each_others_orders(http, engine):
    mine = http.post("/v1/orders", json=order("secret-1", "desk-1"), headers=auth("desk-1-algo"))
    assert mine.status_code == 200 and mine.json()["verdict"] in ("filled", "rejected"), mine.text
    before = stored_orders(engine)
    other = auth("desk-2-algo")

    # trade for the other desk: refused in the sidecar, never stored, never executed
    r = http.post("/v1/orders", json=order("secret-2", "desk-1"), headers=other)
    assert r.status_code == 403 and r.json() == {
        "verdict": "forbidden", "reason": "account_not_permitted", "client_order_id": "secret-2",
        "detail": "principal desk-2-algo may not act for account desk-1"}  # fmt: skip
    r = http.post("/v1/orders", json=order("secret-1", "desk-1", quantity="75"), headers=other)  # its id, other content
    assert r.status_code == 403 and r.json()["reason"] == "account_not_permitted"
    _no_order_in(r)

    # read or cancel it, naming the account: 403 without a word about the order
    for method in ("GET", "DELETE"):
        r = http.request(method, "/v1/orders/secret-1?account=desk-1", headers=other)
        assert r.status_code == 403 and r.json()["reason"] == "account_not_permitted", r.text
        _no_order_in(r)
    # ... or in its own account (the default for a one-account key): 404, as for any unknown id
    for method in ("GET", "DELETE"):
        r = http.request(method, "/v1/orders/secret-1", headers=other)
        assert r.status_code == 404, r.text
        _no_order_in(r)
        assert r.json() == {"detail": "order secret-1 not found in account desk-2"}  # as for an id never used
        assert http.request(method, "/v1/orders/never-was", headers=other).status_code == 404

    # list: its own orders only; the other desk's account by name is 403
    r = http.get("/v1/orders", headers=other)
    assert r.status_code == 200 and r.json() == {"orders": [], "next_cursor": None}
    r = http.get("/v1/orders?account=desk-1", headers=other)
    assert r.status_code == 403 and r.json()["reason"] == "account_not_permitted"
    _no_order_in(r)

    # the owner still sees exactly its one order, unchanged
    r = http.get("/v1/orders", headers=auth("desk-1-algo"))
    assert [o["client_order_id"] for o in r.json()["orders"]] == ["secret-1"]
    assert r.json()["orders"][0]["quantity"] == "50"
    assert stored_orders(engine) == before
    assert executions(engine) == {("desk-1", "secret-1"): 1}


def test_the_same_client_order_id_in_two_accounts_is_two_independent_orders(http, engine):
    one = http.post("/v1/orders", json=order("same-1", "desk-1"), headers=auth("desk-1-algo"))
    two = http.post("/v1/orders", json=order("same-1", "desk-2", quantity="75"), headers=auth("desk-2-algo"))
    for r in (one, two):
        assert r.status_code == 200 and r.json()["verdict"] in ("filled", "rejected"), r.text
    assert one.json()["order"]["account"] == "desk-1" and two.json()["order"]["account"] == "desk-2"
    assert stored_orders(engine) == [("desk-1", "same-1", "50"), ("desk-2", "same-1", "75")]
    assert executions(engine) == {("desk-1", "same-1"): 1, ("desk-2", "same-1"): 1}

    # each desk reads its own
    assert http.get("/v1/orders/same-1", headers=auth("desk-1-algo")).json()["quantity"] == "50"
    assert http.get("/v1/orders/same-1", headers=auth("desk-2-algo")).json()["quantity"] == "75"
    # a resend in one account is that account's duplicate; other content is a conflict with
    # that account's order, never a glimpse of the other account's
    again = http.post("/v1/orders", json=order("same-1", "desk-2", quantity="75"), headers=auth("desk-2-algo"))
    assert again.status_code == 200 and again.json()["verdict"] == "duplicate"
    assert again.json()["order"]["account"] == "desk-2"
    conflict = http.post("/v1/orders", json=order("same-1", "desk-2", quantity="80"), headers=auth("desk-2-algo"))
    assert conflict.status_code == 409 and conflict.json()["verdict"] == "conflict"
    assert conflict.json()["order"]["account"] == "desk-2" and conflict.json()["order"]["quantity"] == "75"
    assert "desk-1" not in conflict.text
    assert executions(engine) == {("desk-1", "same-1"): 1, ("desk-2", "same-1"): 1}


def test_each_route_needs_its_scope(http, engine):
    r = http.post("/v1/ticks", json=TICK, headers=auth("desk-1-algo"))  # an orders key cannot move prices
    assert r.status_code == 403 and r.json() == {"verdict": "forbidden", "reason": "scope_missing",
                                                 "detail": "principal desk-1-algo lacks the ticks:write scope"}  # fmt: skip
    feed = auth("md-feed")
    assert http.post("/v1/orders", json=order("f-1", "desk-1"), headers=feed).json()["reason"] == "scope_missing"
    assert http.get("/v1/orders", headers=feed).status_code == 403
    assert http.get("/v1/orders/f-1?account=desk-1", headers=feed).status_code == 403
    reader = auth("desk-1-reader")
    for method, path in (("POST", "/v1/orders"), ("DELETE", "/v1/orders/r-1")):
        r = http.request(method, path, json=order("r-1", "desk-1"), headers=reader)
        assert r.status_code == 403 and r.json()["reason"] == "scope_missing", r.text
    assert http.get("/v1/orders/r-1", headers=reader).status_code == 404  # reading is its scope
    assert stored_orders(engine) == [] and executions(engine) == {}


def test_a_key_for_several_accounts_names_the_account(http):
    ops = auth("ops")
    r = http.get("/v1/orders/x", headers=ops)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "account"]
    assert http.get("/v1/orders/x?account=desk-2b", headers=ops).status_code == 404  # desk-2* matches
    r = http.get("/v1/orders/x?account=desk-3", headers=ops)
    assert r.status_code == 403 and r.json()["reason"] == "account_not_permitted"
    assert http.get("/v1/orders?account=desk-2&account=desk-3", headers=ops).status_code == 422  # said twice
    assert http.get("/v1/orders/x?account=desk-1&monkey=1", headers=ops).status_code == 404  # other parameters are fine


def test_wrong_keys_are_401_however_close(http):
    right = key_for("desk-1-algo")
    assert http.get("/v1/orders", headers=auth(right)).status_code == 200
    flipped = right[:-1] + ("A" if right[-1] != "A" else "B")
    near_misses = [
        flipped,  # shares all but the last character
        right[:-1], right + "x", right + right,  # other lengths
        right.upper(), "x" * 16, "x" * 4096, right[: len(right) // 2],
    ]
    for key in near_misses:
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            r = http.get("/v1/orders", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (key, r.text)
    # two different keys at once (even if one is right) is no key
    assert http.get("/v1/orders", headers={"Authorization": f"Bearer {right}", "X-API-Key": flipped}).status_code == 401
    assert http.get("/v1/orders", headers={"Authorization": f"Bearer {right}", "X-API-Key": right}).status_code == 200
    assert http.get("/v1/orders", headers={"Authorization": f"Basic {right}"}).status_code == 401
    # a key in the query string is refused even beside a good header, under any name
    for query in (f"api_key={right}", f"token={right}", f"q={right}"):
        r = http.get(f"/v1/orders?{query}", headers=auth(right))
        assert r.status_code == 401 and "query string" in r.json()["detail"], query


def test_keys_file_reload_rotates_a_key_without_a_restart(sidecar, keys_file, engine):
    old, new = key_for("desk-1-algo"), "wjk_rotated_" + "n" * 30
    url = sidecar.url + "/v1/orders"
    assert httpx.get(url, headers=auth(old)).status_code == 200
    loaded = wait_for(lambda: audit_rows(engine), what="the start-up keys_file_loaded audit event")
    assert loaded[0]["kind"] == "keys_file_loaded" and loaded[0]["actor"] == "sidecar:http"
    assert loaded[0]["detail"]["sha256"] == hashlib.sha256(keys_file.read_bytes()).hexdigest()

    rotated = [entry("desk-1-algo", ["desk-1"], ["orders:write", "orders:read"], key=new), *PRINCIPALS[1:]]
    write_keys(keys_file, rotated)
    wait_for(lambda: httpx.get(url, headers=auth(new)).status_code == 200, what="the new key working")
    assert httpx.get(url, headers=auth(old)).status_code == 401
    assert httpx.get(url, headers=auth("desk-2-algo")).status_code == 200  # the others unchanged
    assert sidecar.proc.poll() is None  # no restart
    rows = wait_for(lambda: [r for r in audit_rows(engine) if r["kind"] == "keys_file_loaded"][1:],
                    what="the reload's audit event")  # fmt: skip
    assert rows[0]["detail"]["sha256"] == hashlib.sha256(keys_file.read_bytes()).hexdigest()
    assert "desk-1-algo" in rows[0]["detail"]["principals"]


BAD_FILES = [
    ("principals:\n  - {name: a, key_sha256: 'zz', scopes: [orders:read], accounts: [x]}\n", "principals[0] (a): key_sha256"),
    ("principals:\n  - {name: a, key_sha256: '%s', scopes: [orders:read], accounts: [x], colour: red}\n" % ("ab" * 32),
     "principals[0] (a): unknown field(s) colour"),
    ("principals:\n  - {name: a, key_sha256: '%s', scopes: [orders:read], accounts: [x]}\n"
     "  - {name: b, key_sha256: '%s', scopes: [orders:read], accounts: [x]}\n" % ("ab" * 32, "AB" * 32),
     "principals[1] (b): key_sha256 is the same as a's"),
    ("principals:\n  - {name: a, key_sha256: '%s', scopes: [orders:read], accounts: [x]}\n"
     "  - {name: a, key_sha256: '%s', scopes: [orders:read], accounts: [x]}\n" % ("ab" * 32, "cd" * 32),
     "principals[1] (a): the name is already used by principals[0]"),
    ("principals:\n  - {name: a, key_sha256: '%s', scopes: [orders:fly], accounts: [x]}\n" % ("ab" * 32), "unknown scope"),
    ("principals: [\n", "is not valid YAML"),
]


@pytest.mark.parametrize("text, named", BAD_FILES)
def test_a_bad_keys_file_is_refused_and_the_old_keys_stay(sidecar, keys_file, engine, text, named):
    url = sidecar.url + "/v1/orders"
    keys_file.write_text(text)
    refused = wait_for(lambda: [r for r in audit_rows(engine) if r["kind"] == "keys_file_refused"], what="keys_file_refused")
    assert refused[0]["detail"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert named in refused[0]["detail"]["error"], refused[0]["detail"]["error"]
    assert "refused" in sidecar.log.read_text()
    for name in ("desk-1-algo", "desk-2-algo"):  # the keys in use stay
        assert httpx.get(url, headers=auth(name)).status_code == 200
    assert httpx.get(url, headers={"X-API-Key": "x" * 40}).status_code == 401
    # a good file again is taken
    write_keys(keys_file, PRINCIPALS[1:])
    wait_for(lambda: httpx.get(url, headers=auth("desk-1-algo")).status_code == 401, what="the good file taken")
    assert httpx.get(url, headers=auth("desk-2-algo")).status_code == 200


def test_a_json_keys_file_works_too(engine, tmp_path):
    path = tmp_path / "keys.json"
    write_keys(path, PRINCIPALS, as_json=True)
    proc = start_sidecar(engine, path)
    try:
        assert httpx.get(proc.url + "/v1/orders", headers=auth("desk-1-algo")).status_code == 200
    finally:
        proc.stop()


def _sidecar_settings_error(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WOJAK_")}
    return subprocess.run([sys.executable, "-m", "wojak", "sidecar", "http"], env={**base, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_start_up_errors_name_the_setting(tmp_path, keys_file):
    both = _sidecar_settings_error({"WOJAK_API_KEYS": "k" * 20, "WOJAK_API_KEYS_FILE": str(keys_file)})
    assert both.returncode == 2 and "WOJAK_API_KEYS_FILE and WOJAK_API_KEYS are both set" in both.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_FILES[1][0])
    result = _sidecar_settings_error({"WOJAK_API_KEYS_FILE": str(bad)})
    assert result.returncode == 2 and str(bad) in result.stderr and "unknown field(s) colour" in result.stderr
    missing = _sidecar_settings_error({"WOJAK_API_KEYS_FILE": str(tmp_path / "nope.yaml")})
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    neither = _sidecar_settings_error({})
    assert neither.returncode == 2 and "WOJAK_API_KEYS" in neither.stderr and "WOJAK_API_KEYS_FILE" in neither.stderr


def test_the_development_key_warns_unless_wojak_dev(engine):
    for env, warned in (({}, True), ({"WOJAK_DEV": "1"}, False)):
        proc = HttpSidecarProcess(engine, **env).start()
        try:
            r = httpx.get(proc.url + "/v1/orders", headers={"X-API-Key": API_KEY})
            assert r.status_code == 200  # dev: every account, every scope
        finally:
            proc.stop()
        assert ("WOJAK_API_KEYS is the development form" in proc.log.read_text()) is warned
