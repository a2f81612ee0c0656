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
    MAX_KEYS_FILE_BYTES,
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
     "principals[1] (b): key_sha256 is the same as a's; every principal needs its own key"),
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


@pytest.mark.parametrize("raw, name, message", [
    (b"principals: [just-a-string]\n", "keys.yaml",
     "principals[0] must be a mapping with name, key_sha256, accounts, scopes"),
    (_yaml(f"{{name: 12, key_sha256: '{H1}', scopes: [ticks:write]}}"), "keys.yaml", "principals[0]: name must be a string"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [orders:read], accounts: [d1, d1]}}"), "keys.yaml",
     "principals[0] (a): an account pattern is listed twice"),
    (_yaml(f"{{name: a, key_sha256: '{'f' * 81}', scopes: [ticks:write]}}"), "keys.yaml", "got 'str'"),
    (_yaml(f"{{name: a, key_sha256: '{'f' * 80}', scopes: [ticks:write]}}"), "keys.yaml", f"got '{'f' * 80}'"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [orders:write, orders:read, ticks:write]}}"), "keys.yaml",
     "principals[0] (a): scope(s) orders:read, orders:write act on accounts, but the entry names no accounts"),
    (b"principals:\n  - {[1, 2]: x}\n", "keys.yaml", "line 2: a mapping key must be a plain value"),
    (b'{"principals": [}', "keys.json", "is not valid JSON: "),
    (b"principals:\n  - name: a\n    key_sha256: 'x'\n  - &anchor {name: b}\n  - *anchor\n", "keys.yaml", "principals[0] (a)"),
])  # fmt: skip
def test_each_refusal_names_the_entry_and_the_reason(raw, name, message):
    with pytest.raises(KeysFileError) as refused:
        parse_keys(raw, name)
    assert message in str(refused.value), str(refused.value)


def test_nested_mappings_and_upper_case_digests_load():
    digest = key_sha256("nested-key-0123456789")
    raw = ("principals:\n  - name: a\n    key_sha256: '" + digest.upper() + "'\n    scopes: [orders:read]\n"
           "    accounts: [desk-1]\n").encode()  # fmt: skip
    ring = parse_keys(raw)
    assert ring.lookup("nested-key-0123456789").name == "a"
    with pytest.raises(KeysFileError, match="key_sha256 is the same as a's"):
        parse_keys(raw + ("  - {name: b, key_sha256: '" + digest + "', scopes: [ticks:write]}\n").encode())


def test_an_empty_development_key_list_is_refused_by_name():
    with pytest.raises(KeysFileError, match="WOJAK_API_KEYS is empty: the HTTP intake needs at least one API key"):
        dev_keyring([])


class _Flaky:
    """An engine client whose audit answers from a script: an exception, retry, ok or another verdict."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.calls: list[tuple[str, str, dict]] = []

    async def audit(self, event, actor, detail):
        self.calls.append((event, actor, detail))
        answer = self.script.pop(0) if self.script else {"verdict": "ok"}
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_audit_trail_resends_until_the_engine_answers_and_never_resends_what_it_answered():
    async def scenario() -> None:
        engine = _Flaky([ConnectionError("not connected"), {"verdict": "retry"}, {"verdict": "ok"},
                         {"verdict": "invalid", "reason": "detail too large"}, {"verdict": "ok"}])  # fmt: skip
        audit = AuditTrail(engine, "sidecar:test", backoff_max=0.01)
        for i in range(3):
            audit.record(f"e{i}", {"i": i})
        sender = asyncio.create_task(audit.run())
        for _ in range(200):
            if not audit.pending:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        sender.cancel()
        # e0 sent three times (an error, a retry, then ok); e1 refused by the engine: dropped, not resent; e2 once
        assert [e for e, _, _ in engine.calls] == ["e0", "e0", "e0", "e1", "e2"]
        assert all(actor == "sidecar:test" for _, actor, _ in engine.calls) and engine.calls[-1][2] == {"i": 2}
        assert audit.pending == 0

    asyncio.run(scenario())


def test_a_full_audit_trail_drops_the_oldest():
    audit = AuditTrail(_Flaky([]), "sidecar:test", max_pending=2)
    for i in range(3):
        audit.record(f"e{i}", {})
    assert audit.pending == 2

    async def drain() -> list[str]:
        sender = asyncio.create_task(audit.run())
        for _ in range(100):
            if not audit.pending:
                break
            await asyncio.sleep(0.01)
        sender.cancel()
        return [e for e, _, _ in audit.client.calls]

    assert asyncio.run(drain()) == ["e1", "e2"]


def test_the_watcher_keeps_polling_after_a_failure_and_audits_the_path_and_names(tmp_path, caplog):
    caplog.set_level("ERROR", logger="wojak.sidecars._core.keys")
    path = tmp_path / "keys.yaml"
    path.write_bytes(_yaml(f"{{name: a, key_sha256: '{key_sha256('key-a' * 4)}', scopes: [ticks:write]}}"))
    taken: list = []
    failures = [RuntimeError("a use() that fails once")]

    def use(ring) -> None:
        if failures:
            raise failures.pop()
        taken.append(ring)

    async def scenario() -> None:
        engine = _Flaky([])
        audit = AuditTrail(engine, "sidecar:http")
        watcher = KeysFileWatcher(str(path), load_keys_file(path), use, audit, interval=0.01)
        runner, sender = asyncio.create_task(watcher.run()), asyncio.create_task(audit.run())
        path.write_bytes(_yaml(f"{{name: b, key_sha256: '{key_sha256('key-b' * 4)}', scopes: [ticks:write]}}"))
        await asyncio.sleep(0.1)  # the first reload fails in use(): logged, the watcher goes on
        assert not runner.done() and taken == []
        [failed] = [r for r in caplog.records if r.name == "wojak.sidecars._core.keys"]
        assert failed.getMessage() == f"keys file {path}: reload failed; the keys in use stay"
        assert failed.exc_info is not None and str(failed.exc_info[1]) == "a use() that fails once"
        path.write_bytes(_yaml(f"{{name: c, key_sha256: '{key_sha256('key-c' * 4)}', scopes: [ticks:write]}}"))
        for _ in range(100):
            if taken and not audit.pending:
                break
            await asyncio.sleep(0.01)
        runner.cancel()
        sender.cancel()
        assert [r.names for r in taken] == [["c"]]
        event, _, detail = engine.calls[-1]
        assert event == "keys_file_loaded" and detail["path"] == str(path)[-256:] and detail["principals"] == ["c"]
        assert detail["count"] == 1 and detail["sha256"] == taken[0].sha256

    asyncio.run(scenario())


def test_the_watcher_audits_a_refused_file_with_its_path_hash_and_reason(tmp_path):
    deep = tmp_path / ("d" * 120) / ("e" * 120)  # a path longer than the 256 characters an audit keeps
    deep.mkdir(parents=True)
    path = deep / "keys.yaml"
    path.write_bytes(_yaml(f"{{name: a, key_sha256: '{key_sha256('key-a' * 4)}', scopes: [ticks:write]}}"))
    engine = _Engine()
    engine.up = True

    async def scenario() -> list:
        audit = AuditTrail(engine, "sidecar:http")
        watcher = KeysFileWatcher(str(path), load_keys_file(path), lambda ring: None, audit, interval=0.01)
        sender = asyncio.create_task(audit.run())
        bad = b"principals: [\n"
        path.write_bytes(bad)
        assert not watcher.check()
        path.unlink()
        path.mkdir()  # a directory where the file was: it exists, and cannot be read as a file
        assert not watcher.check()
        path.rmdir()
        assert not watcher.check()  # gone: refused once more (missing), not again while it stays so
        assert not watcher.check()
        for _ in range(100):
            if not audit.pending:
                break
            await asyncio.sleep(0.01)
        sender.cancel()
        return engine.recorded

    recorded = asyncio.run(scenario())
    assert len(str(path)) > 256
    assert [(event, detail["path"], detail["sha256"]) for event, _, detail in recorded] == [
        ("keys_file_refused", str(path)[-256:], hashlib.sha256(b"principals: [\n").hexdigest()),
        ("keys_file_refused", str(path)[-256:], None),
    ]  # fmt: skip
    assert "not valid YAML" in recorded[0][2]["error"] and recorded[1][2]["error"] == "cannot be read (missing?)"


def test_key_hashes_and_new_entries_are_plain_text():
    from wojak.engine.protocol import Scope

    assert key_sha256(b"wjk_some-key") == key_sha256("wjk_some-key") == hashlib.sha256(b"wjk_some-key").hexdigest()
    _, entry = new_key("feed", [], [Scope.TICKS_WRITE])
    assert entry["scopes"] == ["ticks:write"] and type(entry["scopes"][0]) is str  # written to YAML as text


def test_a_keys_file_of_exactly_the_size_limit_loads_whole_and_one_byte_more_is_refused(tmp_path):
    last = f"  - {{name: last, key_sha256: '{H2}', scopes: [ticks:write]}}"  # no newline: a cut file is not YAML
    head = f"principals:\n  - {{name: first, key_sha256: '{H1}', scopes: [ticks:write]}}\n"
    padding = MAX_KEYS_FILE_BYTES - len(head) - len(last) - 2  # "#" and its newline
    path = tmp_path / "keys.yaml"
    path.write_text("#" + "x" * padding + "\n" + head + last)
    assert path.stat().st_size == MAX_KEYS_FILE_BYTES
    assert load_keys_file(path).names == ["first", "last"]
    assert parse_keys(path.read_bytes()).names == ["first", "last"]
    path.write_text("#" + "x" * (padding + 1) + "\n" + head + last)
    with pytest.raises(KeysFileError) as refused:
        load_keys_file(path)
    assert str(refused.value) == f"keys file {path}: is larger than {MAX_KEYS_FILE_BYTES} bytes"
    with pytest.raises(KeysFileError, match=f"^is larger than {MAX_KEYS_FILE_BYTES} bytes$"):
        parse_keys(path.read_bytes())


def test_an_audit_event_dropped_while_it_is_being_sent_does_not_take_the_next_one_with_it():
    """A full trail drops its oldest event; if that is the one in flight, the engine's answer
    to it must not pop the event now at the head, which was never sent."""

    class Held:
        def __init__(self) -> None:
            self.calls: list[str] = []
            self.release = asyncio.Event()

        async def audit(self, event, actor, detail):
            self.calls.append(event)
            if event == "e0":
                await self.release.wait()
            return {"verdict": "ok"}

    async def scenario() -> list[str]:
        engine = Held()
        audit = AuditTrail(engine, "sidecar:test", max_pending=2)
        audit.record("e0", {})
        audit.record("e1", {})
        sender = asyncio.create_task(audit.run())
        for _ in range(200):
            if engine.calls:
                break
            await asyncio.sleep(0.01)
        audit.record("e2", {})  # full: e0, in flight, is dropped
        engine.release.set()
        for _ in range(200):
            if not audit.pending:
                break
            await asyncio.sleep(0.01)
        sender.cancel()
        return engine.calls

    assert asyncio.run(scenario()) == ["e0", "e1", "e2"]


ENTRY = f"{{name: a, key_sha256: '{H1}', scopes: [ticks:write]}}"


@pytest.mark.parametrize("raw, name, message", [
    (b"[1, 2]\n", "keys.yaml", "must be a mapping with a principals list"),
    (b"principals: [" + ENTRY.encode() + b"]\nzeta: 1\nalpha: 2\n", "keys.yaml",
     "unknown top-level field(s) alpha, zeta; only principals is allowed"),
    (b"principals: []\n", "keys.yaml", "principals must be a non-empty list"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: [ticks:write], zz: 1, extra: 2}}"), "keys.yaml",
     "principals[0] (a): unknown field(s) extra, zz; allowed: name, key_sha256, accounts, scopes"),
    (_yaml(f"{{name: a, key_sha256: '{H1}', scopes: []}}"), "keys.yaml",
     f"principals[0] (a): scopes must be a non-empty list of {', '.join(sorted(ALL_SCOPES))}"),
    (b"principals:\n  - name: a\n\n    name: b\n", "keys.yaml", "line 4: key 'name' appears twice in one mapping"),
])  # fmt: skip
def test_each_refusal_of_a_keys_file_in_full(raw, name, message):
    with pytest.raises(KeysFileError) as refused:
        parse_keys(raw, name)
    assert str(refused.value) == message


def test_an_unreadable_keys_file_and_an_empty_development_list_in_full(tmp_path):
    with pytest.raises(KeysFileError) as refused:
        load_keys_file(tmp_path / "missing.yaml")
    assert str(refused.value) == f"keys file {tmp_path / 'missing.yaml'}: cannot be read: No such file or directory"
    with pytest.raises(KeysFileError) as refused:
        dev_keyring([])
    assert str(refused.value) == "WOJAK_API_KEYS is empty: the HTTP intake needs at least one API key"
    with pytest.raises(KeysFileError) as refused:
        new_key("a b", [], ["ticks:write"])
    assert str(refused.value) == "principals[0] (a b): principal name 'a b' must match [A-Za-z0-9._:@-]{1,64}"


def test_the_audit_trail_logs_what_it_drops_and_what_the_engine_did_not_record(caplog):
    caplog.set_level("INFO", logger="wojak.sidecars._core.keys")
    audit = AuditTrail(_Flaky([{"verdict": "ok"}, {"verdict": "invalid", "reason": "detail too large"}]), "sidecar:test",
                       max_pending=2)  # fmt: skip
    for i in range(3):
        audit.record(f"e{i}", {"i": i})

    async def drain() -> None:
        sender = asyncio.create_task(audit.run())
        for _ in range(200):
            if not audit.pending:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        sender.cancel()

    asyncio.run(drain())
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "wojak.sidecars._core.keys"] == [
        ("ERROR", "audit: 2 events wait for the engine; dropping the oldest (e0)"),
        ("WARNING", "audit: the engine did not record e2: {'verdict': 'invalid', 'reason': 'detail too large'}"),
    ]


def test_a_refused_keys_file_is_logged_with_its_path_and_the_reason(tmp_path, caplog):
    path = tmp_path / "keys.yaml"
    path.write_bytes(_yaml(ENTRY))
    ring = load_keys_file(path)
    watcher = KeysFileWatcher(str(path), ring, lambda _: None, None, 0.01)
    path.write_bytes(b"principals: []\n")
    caplog.set_level("ERROR", logger="wojak.sidecars._core.keys")
    assert watcher.check() is False
    assert [r.getMessage() for r in caplog.records if r.name == "wojak.sidecars._core.keys"] == [
        f"keys file {path} refused, the keys in use stay: principals must be a non-empty list"]


def test_a_loaded_keys_file_is_logged_with_its_path_principals_and_hash(tmp_path, caplog):
    path = tmp_path / "keys.yaml"
    path.write_bytes(_yaml(ENTRY, f"{{name: b, key_sha256: '{H2}', scopes: [ticks:write]}}"))
    ring = load_keys_file(path)
    caplog.set_level("INFO", logger="wojak.sidecars._core.keys")
    KeysFileWatcher(str(path), ring, lambda _: None, None).loaded(ring)
    assert [r.getMessage() for r in caplog.records if r.name == "wojak.sidecars._core.keys"] == [
        f"keys file {path} loaded: 2 principal(s) a, b (sha256 {ring.sha256})"]
