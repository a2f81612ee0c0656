"""The HTTP intake's wiring, in process: its settings as the environment gives them, the
metrics it counts (refusals by status, verdicts, engine round trips), what it keeps on
``app.state``, the open paths, and the guard's edges (schemes, header forms, Content-Length)."""

from __future__ import annotations

import httpx
import pytest

from tests.sidecars.http.test_http_routes_in_process import KEYS, ORDER, STORED, ScriptedEngine, api, engine  # noqa: F401
from wojak.sidecars.http.config import HttpSidecarSettings

ENV = ("WOJAK_API_KEYS", "WOJAK_API_KEYS_FILE", "WOJAK_DEV", "WOJAK_ENGINE_SOCKET", "WOJAK_API_KEYS_RELOAD_SECONDS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    import os

    for name in [k for k in os.environ if k.startswith("WOJAK_SIDECAR_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_every_setting_reaches_the_config(clean_env, tmp_path):
    env = {"WOJAK_SIDECAR_HOST": "0.0.0.0", "WOJAK_SIDECAR_PORT": "9090", "WOJAK_ENGINE_SOCKET": "/run/x.sock",
           "WOJAK_API_KEYS": "a" * 16 + " , " + "b" * 20 + ",", "WOJAK_API_KEYS_RELOAD_SECONDS": "2.5",
           "WOJAK_DEV": "Yes", "WOJAK_SIDECAR_MAX_BODY_BYTES": "1024", "WOJAK_SIDECAR_ENGINE_DEADLINE": "1.5",
           "WOJAK_SIDECAR_ENGINE_WINDOW": "7", "WOJAK_SIDECAR_MAX_HEADER_BYTES": "2048", "WOJAK_SIDECAR_MAX_HEADERS": "9",
           "WOJAK_SIDECAR_HEADER_TIMEOUT": "3", "WOJAK_SIDECAR_BODY_TIMEOUT": "4", "WOJAK_SIDECAR_KEEPALIVE_TIMEOUT": "6",
           "WOJAK_SIDECAR_MAX_CONNECTIONS": "11"}  # fmt: skip
    for k, v in env.items():
        clean_env.setenv(k, v)
    c = HttpSidecarSettings().to_config()
    assert c == HttpSidecarSettings(
        engine_socket="/run/x.sock", api_keys=("a" * 16, "b" * 20), api_keys_file=None, api_keys_reload_seconds=2.5, dev=True,
        host="0.0.0.0", port=9090, max_body_bytes=1024, engine_deadline=1.5, engine_window=7, max_header_bytes=2048,
        max_headers=9, header_timeout=3.0, body_timeout=4.0, keepalive_timeout=6.0, max_connections=11)  # fmt: skip


@pytest.mark.parametrize("value, dev", [("1", True), ("true", True), ("YES", True), (" 1 ", True), ("0", False), ("", False),
                                        ("on", False)])  # fmt: skip
def test_wojak_dev(clean_env, value, dev):
    clean_env.setenv("WOJAK_API_KEYS", "k" * 16)
    clean_env.setenv("WOJAK_DEV", value)
    assert HttpSidecarSettings().to_config().dev is dev


def test_the_defaults(clean_env):
    clean_env.setenv("WOJAK_API_KEYS", "k" * 16)
    c = HttpSidecarSettings().to_config()
    assert (c.host, c.port, c.max_body_bytes, c.engine_deadline, c.engine_window, c.dev, c.api_keys_reload_seconds) == (
        "127.0.0.1", 8080, 65536, 5.0, 1024, False, 1.0)
    assert (c.max_header_bytes, c.max_headers, c.header_timeout, c.body_timeout, c.keepalive_timeout, c.max_connections) == (
        16384, 100, 10.0, 10.0, 5.0, 1000)


def test_keys_settings_refusals(clean_env, tmp_path):
    with pytest.raises(ValueError, match="WOJAK_API_KEYS is empty and WOJAK_API_KEYS_FILE is not set"):
        HttpSidecarSettings().to_config()
    clean_env.setenv("WOJAK_API_KEYS", " , ")
    with pytest.raises(ValueError, match="WOJAK_API_KEYS is empty"):
        HttpSidecarSettings().to_config()
    clean_env.setenv("WOJAK_API_KEYS", "k" * 16)
    clean_env.setenv("WOJAK_API_KEYS_FILE", str(tmp_path / "keys.yaml"))
    with pytest.raises(ValueError, match="both set"):
        HttpSidecarSettings().to_config()
    clean_env.delenv("WOJAK_API_KEYS")
    with pytest.raises(ValueError, match="cannot be read"):  # the file is checked at start
        HttpSidecarSettings().to_config()
    clean_env.setenv("WOJAK_API_KEYS_FILE", "  ")
    with pytest.raises(ValueError, match="WOJAK_API_KEYS is empty and WOJAK_API_KEYS_FILE is not set"):
        HttpSidecarSettings().to_config()
    clean_env.setenv("WOJAK_API_KEYS", "short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        HttpSidecarSettings()


def test_each_keys_setting_refusal_says_what_to_do_in_full(clean_env, tmp_path):
    from wojak.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        HttpSidecarSettings().to_config()
    assert str(refused.value) == (
        "WOJAK_API_KEYS is empty and WOJAK_API_KEYS_FILE is not set: the HTTP intake needs at least one"
        " API key (a keys file from `wojak keys new`, or WOJAK_API_KEYS for development)")  # fmt: skip
    clean_env.setenv("WOJAK_API_KEYS", "k" * 16)
    clean_env.setenv("WOJAK_API_KEYS_FILE", str(tmp_path / "keys.yaml"))
    with pytest.raises(ConfigError) as refused:
        HttpSidecarSettings().to_config()
    assert str(refused.value) == (
        "WOJAK_API_KEYS_FILE and WOJAK_API_KEYS are both set: use WOJAK_API_KEYS_FILE (scoped keys)"
        " or WOJAK_API_KEYS (development: one key with every account and scope), not both")  # fmt: skip


async def test_metrics_count_refusals_verdicts_and_round_trips(api, engine):  # noqa: F811
    engine.answers["submit"] = {"verdict": "filled", "client_order_id": "r-1", "order": STORED}
    async with api() as c:
        assert (await c.post("/v1/orders", json=ORDER)).status_code == 200
        assert (await c.post("/v1/orders", json=ORDER)).status_code == 200
    async with httpx.AsyncClient(transport=c._transport, base_url="http://wojak") as anonymous:
        assert (await anonymous.post("/v1/orders", json=ORDER)).status_code == 401
    async with api("reader") as c:
        assert (await c.post("/v1/orders", json=ORDER)).status_code == 403
    app = c._transport.app
    registry = app.state.metrics.registry
    assert registry.get_sample_value("wojak_sidecar_messages_total", {"source": "http", "verdict": "filled"}) == 2
    assert registry.get_sample_value("wojak_sidecar_engine_seconds_count", {"source": "http"}) == 2
    assert 0 <= registry.get_sample_value("wojak_sidecar_engine_seconds_sum", {"source": "http"}) < 5
    assert registry.get_sample_value("wojak_sidecar_http_refused_total", {"reason": "401"}) == 1
    assert registry.get_sample_value("wojak_sidecar_http_refused_total", {"reason": "403"}) == 1
    app.state.count_refusal("431")
    app.state.count_refusal("431")
    assert registry.get_sample_value("wojak_sidecar_http_refused_total", {"reason": "431"}) == 2
    assert app.state.client is engine
    assert app.state.keys.ring.names == ["desk1", "feed", "reader", "trader"]
    assert app.state.audit is not None


async def test_open_paths_need_no_key_and_the_docs_name_the_intake(api, engine):  # noqa: F811
    async with api() as c:
        transport = c._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://wojak") as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        spec = (await anonymous.get("/openapi.json")).json()
        assert spec["info"]["title"] == "wojak HTTP intake" and spec["info"]["version"] == "1"
        assert "Every /v1 route needs an API key" in spec["info"]["description"]
        assert (await anonymous.get("/v1/orders")).status_code == 401


@pytest.mark.parametrize("headers, status", [
    ({"Authorization": f"bearer {KEYS['trader']}"}, 200), ({"Authorization": f"BEARER {KEYS['trader']}"}, 200),
    ({"Authorization": f"Bearer   {KEYS['trader']}  "}, 200), ({"X-API-Key": f" {KEYS['trader']} "}, 200),
    ({"Authorization": f"Basic {KEYS['trader']}"}, 401), ({"Authorization": f"Bearer{KEYS['trader']}"}, 401),
])  # fmt: skip
async def test_the_ways_a_key_may_be_sent(api, engine, headers, status):  # noqa: F811
    engine.answers["list"] = {"verdict": "ok", "orders": [], "next_cursor": None}
    async with api() as c:
        del c.headers["authorization"]
        r = await c.get("/v1/orders", headers=headers)
    assert r.status_code == status
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"detail": "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key (keys come"
                                      " from WOJAK_API_KEYS_FILE, or WOJAK_API_KEYS in development)"}  # fmt: skip


@pytest.mark.parametrize("length", ["abc", "-1", "1.0", " 5"])
async def test_a_bad_content_length_is_400_and_closes(api, engine, length):  # noqa: F811
    async with api() as c:
        r = await c.post("/v1/orders", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": length})
    assert r.status_code == 400 and r.json() == {"detail": "bad Content-Length"}
    assert r.headers["connection"] == "close"
    assert engine.calls == []


async def test_get_and_delete_bodies_are_not_read_by_the_guard(api, engine):  # noqa: F811
    engine.answers["get"] = {"verdict": "ok", "order": STORED}
    async with api() as c:
        r = await c.request("GET", "/v1/orders/r-1?account=desk-1", content=b"x" * 100_000)
    assert r.status_code == 200


async def test_serve_listens_with_every_listener_setting_and_counts_its_refusals(clean_env, tmp_path, monkeypatch):
    """``serve`` (what ``wojak sidecar http`` runs) hands each listener setting to the server
    and its refusals to the app's counter; it serves until the server is told to stop."""
    import asyncio
    import socket

    from wojak.sidecars.http import server as server_module
    from wojak.sidecars.http import source

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"WOJAK_API_KEYS": KEYS["trader"], "WOJAK_SIDECAR_HOST": "127.0.0.1", "WOJAK_SIDECAR_PORT": str(port),
           "WOJAK_ENGINE_SOCKET": str(tmp_path / "engine.sock"), "WOJAK_SIDECAR_MAX_HEADER_BYTES": "2048",
           "WOJAK_SIDECAR_MAX_HEADERS": "9", "WOJAK_SIDECAR_HEADER_TIMEOUT": "3", "WOJAK_SIDECAR_BODY_TIMEOUT": "4",
           "WOJAK_SIDECAR_KEEPALIVE_TIMEOUT": "6", "WOJAK_SIDECAR_MAX_CONNECTIONS": "11"}  # fmt: skip
    for k, v in env.items():
        clean_env.setenv(k, v)
    built: list[tuple[object, dict, object]] = []
    real = server_module.uvicorn_server

    def recording(app, **kwargs):
        server = real(app, **kwargs)
        built.append((app, kwargs, server))
        return server

    monkeypatch.setattr(server_module, "uvicorn_server", recording)
    task = asyncio.create_task(source.serve(HttpSidecarSettings().to_config()))
    for _ in range(1000):
        if built and built[0][2].started or task.done():
            break
        await asyncio.sleep(0.01)
    app, kwargs, server = built[0]
    assert server.started
    limits = kwargs["limits"]
    assert (kwargs["host"], kwargs["port"], kwargs["keepalive_timeout"]) == ("127.0.0.1", port, 6.0)
    assert (limits.max_header_bytes, limits.max_headers, limits.header_timeout, limits.body_timeout,
            limits.max_connections) == (2048, 9, 3.0, 4.0, 11)  # fmt: skip
    assert limits.on_refusal == app.state.count_refusal
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        many = {f"x-h{i}": "1" for i in range(10)}  # more headers than WOJAK_SIDECAR_MAX_HEADERS
        assert (await c.get("/healthz", headers=many)).status_code == 431
    registry = app.state.metrics.registry
    assert registry.get_sample_value("wojak_sidecar_http_refused_total", {"reason": "431"}) == 1
    server.should_exit = True
    await asyncio.wait_for(task, 30)
