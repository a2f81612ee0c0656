"""WOJAK_STORE URLs: what each form opens, and each refusal's words."""

from __future__ import annotations

import sqlite3
import time

import pytest

from wojak.engine.store import SQLiteStore, open_store, utc_day


async def test_sqlite_relative_and_absolute_paths_and_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data/w.sqlite")
    try:
        assert isinstance(store, SQLiteStore) and store.path == "data/w.sqlite" and store.min_free_bytes == 1 << 20
        assert (tmp_path / "data" / "w.sqlite").exists()
    finally:
        await store.close()
    absolute = tmp_path / "abs.sqlite"
    store = open_store(f"sqlite:///{absolute}?synchronous=normal&min_free_bytes=4096")
    try:
        assert store.path == str(absolute) and store.min_free_bytes == 4096
        with sqlite3.connect(absolute) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()


@pytest.mark.parametrize("url, words", [
    ("sqlite://host/x.sqlite", "write sqlite:///relative/path or sqlite:////absolute/path"),
    ("sqlite:///", "write sqlite:///relative/path or sqlite:////absolute/path"),
    ("sqlite:///x.sqlite?min_free_bytes=1MB", "min_free_bytes must be a whole number of bytes"),
    ("sqlite:///x.sqlite?synchronous=off", "sqlite synchronous must be normal, full or extra"),
    ("postgres://x", "unsupported scheme 'postgres'"),
    ("x.sqlite", "unsupported scheme ''"),
])  # fmt: skip
def test_bad_urls_are_refused_by_name(url, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=words) as info:
        open_store(url)
    if "synchronous" not in words:
        assert str(info.value).startswith(f"WOJAK_STORE={url!r}: ")


@pytest.mark.parametrize("scheme", ["couchbase", "couchbases"])
@pytest.mark.parametrize("username, password", [("", ""), ("u", ""), ("", "p")])
def test_couchbase_needs_both_credentials_from_the_environment(scheme, username, password, monkeypatch):
    monkeypatch.setenv("WOJAK_COUCHBASE_USERNAME", username)
    monkeypatch.setenv("WOJAK_COUCHBASE_PASSWORD", password)
    with pytest.raises(ValueError, match="set WOJAK_COUCHBASE_USERNAME and WOJAK_COUCHBASE_PASSWORD"):
        open_store(f"{scheme}://127.0.0.1?bucket=b")


@pytest.mark.parametrize("unset", [("WOJAK_COUCHBASE_USERNAME", "WOJAK_COUCHBASE_PASSWORD"),
                                   ("WOJAK_COUCHBASE_USERNAME",), ("WOJAK_COUCHBASE_PASSWORD",)])  # fmt: skip
def test_couchbase_credentials_unset(monkeypatch, unset):
    monkeypatch.setenv("WOJAK_COUCHBASE_USERNAME", "u")
    monkeypatch.setenv("WOJAK_COUCHBASE_PASSWORD", "p")
    for name in unset:  # either one missing (not merely empty) is refused
        monkeypatch.delenv(name)
    with pytest.raises(ValueError, match="set WOJAK_COUCHBASE_USERNAME"):
        open_store("couchbase://127.0.0.1?bucket=b")


@pytest.mark.couchbase
async def test_a_couchbase_url_connects_with_the_credentials_from_the_environment(couchbase_service, monkeypatch):
    url = f"{couchbase_service.url}?bucket={couchbase_service.bucket}&prefix=open-store-url-{time.time_ns()}::"
    monkeypatch.setenv("WOJAK_COUCHBASE_USERNAME", couchbase_service.username)
    monkeypatch.setenv("WOJAK_COUCHBASE_PASSWORD", couchbase_service.password)
    store = open_store(url)
    try:
        await store.append_audit("open", "test", "store", {})  # connects, authenticated, and writes
        assert [e["kind"] for e in await store.list_audit()] == ["open"]
    finally:
        await store.close()


async def test_a_sqlite_url_without_slashes_is_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:w.sqlite")
    try:
        assert store.path == "w.sqlite" and (tmp_path / "w.sqlite").exists()
    finally:
        await store.close()


def test_utc_day(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: the local date differs from UTC's most of the day
    time.tzset()
    try:
        assert utc_day(1_714_607_999.9) == "2024-05-01" and utc_day(36_000) == "1970-01-01"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert utc_day(0) == "1970-01-01"
    assert utc_day(1_714_607_999.9) == "2024-05-01" and utc_day(1_714_608_000) == "2024-05-02"
    assert len(utc_day()) == 10
