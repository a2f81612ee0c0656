"""The keys file loader, the key ring and new keys (wojak/sidecars/_core/keys.py), without processes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re

import pytest

from wojak.engine.protocol import ALL_SCOPES
from wojak.sidecars._core import keys as keys_module
from wojak.sidecars._core.keys import (
    AuditTrail,
    KeysFileError,
    KeysFileWatcher,
    dev_keyring,
    key_sha256,
    load_keys_file,
    new_key,
    parse_keys,
)

H1, H2 = "ab" * 32, "cd" * 32


def _yaml(*entries: str) -> bytes:
    return ("principals:\n" + "".join(f"  - {e}\n" for e in entries)).encode()


def test_new_key_gives_a_wjk_key_and_an_entry_that_loads():
    key, entry = new_key("algo-1", ["desk-1", "desk-2*"], ["orders:write", "orders:read"])
    assert re.fullmatch(r"wjk_[A-Za-z0-9_-]{43}", key)
    assert entry == {"name": "algo-1", "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                     "accounts": ["desk-1", "desk-2*"], "scopes": ["orders:read", "orders:write"]}  # fmt: skip
    ring = parse_keys(("principals:\n  - " + repr(entry).replace("'", '"') + "\n").encode())
    principal = ring.lookup(key)
    assert principal is not None and principal.permits("desk-2x") and not principal.permits("desk-3")
    assert new_key("algo-1", ["desk-1"], ["orders:read"])[0] != key  # fresh every time
    feed_key, feed = new_key("feed", [], ["ticks:write"])
    assert "accounts" not in feed
    with pytest.raises(KeysFileError, match="unknown scope"):
        new_key("x", ["desk-1"], ["orders:fly"])
    with pytest.raises(KeysFileError, match="account pattern"):
        new_key("x", ["desk 1"], ["orders:write"])
    with pytest.raises(KeysFileError, match="act on accounts"):
        new_key("x", [], ["orders:write"])


@pytest.mark.parametrize("raw, message", [
    (b"", "must be a mapping with a principals list"),
    (b"principals: []\n", "non-empty list"),
    (b"principals: [x]\nversion: 2\n", "unknown top-level field(s) version"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [ticks:write], extra: 1}}"), "principals[0] (a): unknown field(s) extra"),
    (_yaml(f"{{key_sha256: '{H1}', scopes: [ticks:write]}}"), "principals[0]: name is required"),
    (_yaml("{name: a, scopes: [ticks:write]}"), "principals[0] (a): key_sha256 is required"),
    (_yaml(f"{{name: a, key_sha256: '{H1}'}}"), "principals[0] (a): scopes is required"),
    (_yaml(f"{{name: a, key_sha256: '{H1[:-1]}', scopes: [ticks:write]}}"), "64 hex digits"),
    (_yaml(f"{{name: a, key_sha256: '{H1[:-1]}g', scopes: [ticks:write]}}"), "64 hex digits"),
    (_yaml("{name: a, key_sha256: 1234, scopes: [ticks:write]}"), "quoted string of 64 hex digits"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: []}}"), "non-empty list"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [ticks:write, ticks:write]}}"), "listed twice"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [orders:read]}}"), "names no accounts"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [orders:read], accounts: 'desk-1'}}"), "accounts must be a list"),
    (_yaml(f"{{name: 'a b', key_sha256: '{H1}', scopes: [ticks:write]}}"), "principal name"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [ticks:write]}}", f"{{name: a, key_sha256: '{H2}', scopes: [ticks:write]}}"),
     "principals[1] (a): the name is already used by principals[0]"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [ticks:write]}}", f"{{name: b, key_sha256: '{H1.upper()}', scopes: [ticks:write]}}"),
     "principals[1] (b): key_sha256 is the same as a's"),
    (f"principals:\n  - name: a\n    name: b\n    key_sha256: '{H1}'\n    scopes: [ticks:write]\n".encode(), "appears twice"),
    (b"principals:\n  - !!python/object:os.system {}\n", "not valid YAML"),
    (b"\xff\xfe", "not UTF-8"),
])  # fmt: skip
def test_a_bad_file_is_refused_naming_the_entry(raw, message):
    with pytest.raises(KeysFileError) as refused:
        parse_keys(raw)
    assert message in str(refused.value), str(refused.value)


def test_json_files_refuse_duplicate_keys_too(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text('{"principals": [{"name": "a", "name": "b", "key_sha256": "%s", "scopes": ["ticks:write"]}]}' % H1)
    with pytest.raises(KeysFileError, match=f"keys file {path}: key 'name' appears twice"):
        load_keys_file(path)
    path.write_text('{"principals": [{"name": "a", "key_sha256": "%s", "scopes": ["ticks:write"]}]}' % H1)
    assert load_keys_file(path).names == ["a"]
    with pytest.raises(KeysFileError, match="cannot be read"):
        load_keys_file(tmp_path / "missing.yaml")


def test_lookup_compares_with_every_entry_whichever_matches(monkeypatch):
    keys = [f"wjk_key_number_{i:04d}_" + "x" * 20 for i in range(50)]
    ring = parse_keys(_yaml(*(f"{{name: p{i}, key_sha256: '{key_sha256(k)}', scopes: [ticks:write]}}" for i, k in enumerate(keys))))
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    for presented, expected in ((keys[0], "p0"), (keys[49], "p49"), (keys[0][:-1] + "y", None), ("short", None), ("", None)):
        calls.clear()
        principal = ring.lookup(presented)
        assert (principal.name if principal else None) == expected
        assert len(calls) == 50  # no early exit on a match, none on a miss: the same work every time


def test_the_development_form_is_one_principal_with_everything():
    ring = dev_keyring(["k" * 16, "j" * 16])
    for key in ("k" * 16, "j" * 16):
        principal = ring.lookup(key)
        assert principal is not None and principal.name == "dev" and principal.permits("anything")
        assert principal.scopes == ALL_SCOPES
    assert ring.lookup("k" * 15) is None
    with pytest.raises(KeysFileError):
        dev_keyring([])


class _Engine:
    """An engine client whose audit answers retry until told to be up."""

    def __init__(self) -> None:
        self.up = False
        self.recorded: list[tuple[str, str, dict]] = []

    async def audit(self, event, actor, detail):
        if not self.up:
            return {"verdict": "retry", "reason": "engine_unavailable"}
        self.recorded.append((event, actor, detail))
        return {"verdict": "ok"}


def test_the_watcher_takes_good_files_refuses_bad_ones_and_audits_each_once_the_engine_answers(tmp_path):
    path = tmp_path / "keys.yaml"
    first = _yaml(f"{{name: a, key_sha256: '{key_sha256('key-a' * 4)}', scopes: [ticks:write]}}")
    path.write_bytes(first)
    engine = _Engine()
    in_use = [load_keys_file(path)]

    async def scenario() -> None:
        audit = AuditTrail(engine, "sidecar:http", backoff_max=0.05)
        watcher = KeysFileWatcher(str(path), in_use[0], in_use.append, audit, interval=0.01)
        watcher.loaded(in_use[0])
        sender = asyncio.create_task(audit.run())
        assert not watcher.check()  # unchanged
        path.write_bytes(first)  # touched, same content: nothing to do
        assert not watcher.check()
        bad = b"principals: [\n"
        path.write_bytes(bad)
        assert not watcher.check() and len(in_use) == 1  # refused: the keys in use stay
        path.unlink()
        assert not watcher.check() and len(in_use) == 1  # missing: refused too
        second = _yaml(f"{{name: b, key_sha256: '{key_sha256('key-b' * 4)}', scopes: [ticks:write]}}")
        path.write_bytes(second)
        assert watcher.check() and in_use[-1].names == ["b"]
        await asyncio.sleep(0.2)
        assert engine.recorded == [] and audit.pending == 4  # the engine is down: they wait, in order
        engine.up = True
        for _ in range(100):
            if not audit.pending:
                break
            await asyncio.sleep(0.02)
        sender.cancel()
        kinds = [(e, d.get("sha256")) for e, _, d in engine.recorded]
        assert kinds == [("keys_file_loaded", hashlib.sha256(first).hexdigest()),
                         ("keys_file_refused", hashlib.sha256(bad).hexdigest()),
                         ("keys_file_refused", None),
                         ("keys_file_loaded", hashlib.sha256(second).hexdigest())]  # fmt: skip
        assert all(actor == "sidecar:http" for _, actor, _ in engine.recorded)
        assert "not valid YAML" in engine.recorded[1][2]["error"]

    asyncio.run(scenario())
