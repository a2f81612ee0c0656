"""WOJAK_STORE URLs: what each form opens, and each refusal's words."""

from __future__ import annotations

import sqlite3

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


def test_couchbase_credentials_unset(monkeypatch):
    monkeypatch.delenv("WOJAK_COUCHBASE_USERNAME", raising=False)
    monkeypatch.delenv("WOJAK_COUCHBASE_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="set WOJAK_COUCHBASE_USERNAME"):
        open_store("couchbase://127.0.0.1?bucket=b")


def test_utc_day():
    assert utc_day(0) == "1970-01-01"
    assert utc_day(1_714_607_999.9) == "2024-05-01" and utc_day(1_714_608_000) == "2024-05-02"
    assert len(utc_day()) == 10
