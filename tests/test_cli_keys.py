"""`wojak keys new`: a key printed once, and a keys-file entry that holds only its hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import yaml

from tests.test_cli import ENV_WITHOUT_WOJAK


def keys_new(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wojak", "keys", "new", *args], env=ENV_WITHOUT_WOJAK,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_keys_new_yaml_entry_on_stdout_key_once_on_stderr(tmp_path):
    from wojak.sidecars._core.keys import load_keys_file

    result = keys_new("--name", "algo-1", "--accounts", "desk-1", "desk-2*", "--scopes", "orders:write", "orders:read")
    assert result.returncode == 0, result.stderr
    keys = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ") and line.strip()]
    assert len(keys) == 1 and result.stderr.count(keys[0]) == 1  # printed once
    key = keys[0]
    assert key not in result.stdout  # stdout is only the entry: `>> keys.yaml` never stores the key

    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("principals:\n" + result.stdout)  # pasted under principals:, as the stderr says
    entry = yaml.safe_load(keys_file.read_text())["principals"][0]
    assert entry == {"name": "algo-1", "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                     "accounts": ["desk-1", "desk-2*"], "scopes": ["orders:read", "orders:write"]}  # fmt: skip
    principal = load_keys_file(keys_file).lookup(key)  # the sidecar's own loader takes it
    assert principal is not None and principal.name == "algo-1" and principal.permits("desk-2b")

    second = keys_new("--name", "algo-2", "--accounts", "*", "--scopes", "orders:read")
    with keys_file.open("a") as f:  # a second `>> keys.yaml` appends a second entry
        f.write(second.stdout)
    assert load_keys_file(keys_file).names == ["algo-1", "algo-2"]


def test_keys_new_json():
    result = keys_new("--name", "algo-2", "--accounts", "desk-*", "--scopes", "orders:write", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["entry"]["name"] == "algo-2" and out["entry"]["accounts"] == ["desk-*"]
    assert out["entry"]["key_sha256"] == hashlib.sha256(out["key"].encode()).hexdigest()
    assert out["key"] not in json.dumps(out["entry"])


def test_keys_new_refuses_an_unknown_scope_or_a_bad_pattern_in_one_line():
    for args in (("--accounts", "desk-1", "--scopes", "launch-missiles"), ("--accounts", "desk 1!", "--scopes", "orders:write")):
        result = keys_new("--name", "algo-3", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
