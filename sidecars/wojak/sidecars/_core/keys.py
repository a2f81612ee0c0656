"""API keys: the keys file, the constant-time lookup, reload without a restart, new keys.

``WOJAK_API_KEYS_FILE`` (YAML, or JSON when the name ends in ``.json``) stores only the
SHA-256 of each key, with the principal the key stands for::

    principals:
      - name: desk-1-algo
        key_sha256: "<64 hex digits: sha256 of the key>"
        accounts: ["desk-1", "desk-1-*"]
        scopes: [orders:write, orders:read]
      - name: md-feed
        key_sha256: "..."
        scopes: [ticks:write]

A presented key is hashed and compared with every stored hash (``hmac.compare_digest``,
no early exit, no prefix index), so the time taken says nothing about which key, or how
much of one, was right. ``WOJAK_API_KEYS`` is the development form: one principal ``dev``
with every account and every scope.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from wojak.engine.protocol import ALL_SCOPES, Principal, PrincipalError, Scope, Verdict
from wojak.errors import ConfigError

log = logging.getLogger(__name__)

KEY_PREFIX = "wjk_"
DEV_PRINCIPAL = "dev"
MAX_KEYS_FILE_BYTES = 1024 * 1024
_ENTRY_FIELDS = ("name", "key_sha256", "accounts", "scopes")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Scopes that act on accounts: an entry holding one of them must name its accounts.
_ACCOUNT_SCOPES = frozenset({Scope.ORDERS_WRITE.value, Scope.ORDERS_READ.value, Scope.ACCOUNTS_ADMIN.value})


class KeysFileError(ConfigError):
    """A keys file that cannot be used; the message names the file and the entry."""


def key_sha256(key: str | bytes) -> str:
    """The hex SHA-256 of a key, as the keys file stores it."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """Principals by the SHA-256 of their key."""

    entries: tuple[tuple[bytes, Principal], ...]
    source: str = ""  # "WOJAK_API_KEYS" or the keys file's path
    sha256: str = ""  # of the keys file's content

    def lookup(self, presented: bytes | str) -> Principal | None:
        """The principal whose key this is, or None: compares with every entry, in constant time."""
        digest = hashlib.sha256(presented.encode() if isinstance(presented, str) else presented).digest()
        found = None
        for stored, principal in self.entries:  # every entry, always: no early exit
            if hmac.compare_digest(digest, stored):
                found = principal
        return found

    @property
    def names(self) -> list[str]:
        return sorted({p.name for _, p in self.entries})

    def __len__(self) -> int:
        return len(self.entries)


def dev_keyring(keys: Iterable[str]) -> KeyRing:
    """``WOJAK_API_KEYS``: every key is the ``dev`` principal, every account, every scope."""
    dev = Principal.of(DEV_PRINCIPAL, ["*"], ALL_SCOPES)
    entries = tuple((hashlib.sha256(k.encode()).digest(), dev) for k in keys)
    if not entries:
        raise KeysFileError("WOJAK_API_KEYS is empty: the HTTP intake needs at least one API key")
    return KeyRing(entries, source="WOJAK_API_KEYS")


# -- the keys file ------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            raise KeysFileError(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value") from None
        if duplicate:
            raise KeysFileError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping")
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise KeysFileError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _decode(raw: bytes, name: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeysFileError(f"is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if name.endswith(".json"):
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except ValueError as exc:
            if isinstance(exc, KeysFileError):
                raise
            raise KeysFileError(f"is not valid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise KeysFileError(f"is not valid YAML: {exc}") from None


def _entry(index: int, raw: Any) -> tuple[bytes, Principal, str]:
    where = f"principals[{index}]"
    if not isinstance(raw, dict):
        raise KeysFileError(f"{where} must be a mapping with {', '.join(_ENTRY_FIELDS)}")
    name = raw.get("name")
    if isinstance(name, str):
        where += f" ({name})"
    unknown = sorted(str(k) for k in raw if k not in _ENTRY_FIELDS)
    if unknown:
        raise KeysFileError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_ENTRY_FIELDS)}")
    for required in ("name", "key_sha256", "scopes"):
        if raw.get(required) is None:
            raise KeysFileError(f"{where}: {required} is required")
    if not isinstance(name, str):
        raise KeysFileError(f"{where}: name must be a string")
    digest = raw["key_sha256"]
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        shown = digest if isinstance(digest, str) and len(digest) <= 80 else type(digest).__name__
        raise KeysFileError(
            f"{where}: key_sha256 must be a quoted string of 64 hex digits (the SHA-256 of the key), got {shown!r}"
        )
    accounts = raw.get("accounts", [])
    scopes = raw["scopes"]
    if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
        raise KeysFileError(f"{where}: accounts must be a list of account names or patterns (* and ? wildcards)")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise KeysFileError(f"{where}: scopes must be a non-empty list of {', '.join(sorted(ALL_SCOPES))}")
    if len(set(scopes)) != len(scopes):
        raise KeysFileError(f"{where}: a scope is listed twice")
    if len(set(accounts)) != len(accounts):
        raise KeysFileError(f"{where}: an account pattern is listed twice")
    try:
        principal = Principal.of(name, accounts, scopes)
    except PrincipalError as exc:
        raise KeysFileError(f"{where}: {exc}") from None
    if not accounts and principal.scopes & _ACCOUNT_SCOPES:
        needs = ", ".join(sorted(principal.scopes & _ACCOUNT_SCOPES))
        raise KeysFileError(f"{where}: scope(s) {needs} act on accounts, but the entry names no accounts")
    return bytes.fromhex(digest), principal, digest.lower()


def parse_keys(raw: bytes, name: str = "keys.yaml") -> KeyRing:
    """Validate a keys file's content; raises ``KeysFileError`` naming the entry at fault."""
    if len(raw) > MAX_KEYS_FILE_BYTES:
        raise KeysFileError(f"is larger than {MAX_KEYS_FILE_BYTES} bytes")
    data = _decode(raw, name)
    if not isinstance(data, dict) or "principals" not in data:
        raise KeysFileError("must be a mapping with a principals list")
    unknown = sorted(str(k) for k in data if k != "principals")
    if unknown:
        raise KeysFileError(f"unknown top-level field(s) {', '.join(unknown)}; only principals is allowed")
    principals = data["principals"]
    if not isinstance(principals, list) or not principals:
        raise KeysFileError("principals must be a non-empty list")
    entries: list[tuple[bytes, Principal]] = []
    by_hash: dict[str, str] = {}
    by_name: dict[str, int] = {}
    for index, raw_entry in enumerate(principals):
        digest, principal, hex_digest = _entry(index, raw_entry)
        if principal.name in by_name:
            raise KeysFileError(
                f"principals[{index}] ({principal.name}): the name is already used by principals[{by_name[principal.name]}]"
            )
        if hex_digest in by_hash:
            raise KeysFileError(
                f"principals[{index}] ({principal.name}): key_sha256 is the same as {by_hash[hex_digest]}'s;"
                " every principal needs its own key"
            )
        by_name[principal.name] = index
        by_hash[hex_digest] = principal.name
        entries.append((digest, principal))
    return KeyRing(tuple(entries), source=name, sha256=hashlib.sha256(raw).hexdigest())


def load_keys_file(path: str | os.PathLike[str]) -> KeyRing:
    """Read and validate ``path``; raises ``KeysFileError`` whose message starts with the path."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KEYS_FILE_BYTES + 1)
    except OSError as exc:
        raise KeysFileError(f"keys file {path}: cannot be read: {exc.strerror or exc}") from None
    try:
        ring = parse_keys(raw, path)
    except KeysFileError as exc:
        raise KeysFileError(f"keys file {path}: {exc}") from None
    return ring


def new_key(name: str, accounts: Iterable[str] = (), scopes: Iterable[str | Scope] = ()) -> tuple[str, dict[str, Any]]:
    """A fresh key and its keys-file entry: give the key to the client, store only the entry.

    The key is ``wjk_`` + 32 random bytes (urlsafe base64); the entry holds its SHA-256.
    Raises ``KeysFileError`` if the entry would not load (bad name, pattern or scope).
    """
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {"name": name, "key_sha256": key_sha256(key)}
    accounts = list(accounts)
    if accounts:
        entry["accounts"] = accounts
    entry["scopes"] = sorted({s.value if isinstance(s, Scope) else s for s in scopes})
    _entry(0, entry)  # the same checks as loading the file
    return key, entry


# -- reload and audit ---------------------------------------------------------------------


class AuditTrail:
    """Sends a sidecar's own events to the engine's audit log, in order, in the background.

    Best effort: an event waits (bounded queue) and is resent until the engine answers;
    a request never waits for it.
    """

    def __init__(self, client: Any, actor: str, *, max_pending: int = 256, backoff_max: float = 10.0) -> None:
        self.client = client
        self.actor = actor
        self.backoff_max = backoff_max
        self._pending: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=max_pending)
        self._wake = asyncio.Event()

    def record(self, event: str, detail: dict[str, Any]) -> None:
        if len(self._pending) == self._pending.maxlen:
            log.error("audit: %d events wait for the engine; dropping the oldest (%s)", len(self._pending), self._pending[0][0])
        self._pending.append((event, detail))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        backoff = 0.25
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            event, detail = self._pending[0]
            try:
                reply = await self.client.audit(event, actor=self.actor, detail=detail)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a closed or not yet connected client
                reply = {"verdict": Verdict.RETRY.value, "reason": str(exc)}
            if reply.get("verdict") == Verdict.RETRY.value:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            backoff = 0.25
            if self._pending and self._pending[0] == (event, detail):
                self._pending.popleft()
            if reply.get("verdict") != Verdict.OK.value:
                log.warning("audit: the engine did not record %s: %s", event, reply)


class KeysFileWatcher:
    """Re-reads the keys file every ``interval`` seconds; a changed, valid file replaces the keys.

    A file that does not load is refused (logged, audited) and the keys in use stay.
    ``use`` receives each new ``KeyRing``.
    """

    def __init__(
        self, path: str, current: KeyRing, use: Callable[[KeyRing], None], audit: AuditTrail | None, interval: float = 1.0
    ) -> None:
        self.path = path
        self.use = use
        self.audit = audit
        self.interval = interval
        self._seen = current.sha256  # content last loaded or refused
        self._stat: tuple[int, int, int] | None = self._stat_now()

    def _stat_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def loaded(self, ring: KeyRing) -> None:
        """Record a load (the first one, at start, too) in the log and the audit trail."""
        log.info("keys file %s loaded: %d principal(s) %s (sha256 %s)", self.path, len(ring), ", ".join(ring.names), ring.sha256)
        if self.audit is not None:
            names = ring.names  # the engine keeps audit details small (4 KiB): the first 50 names and the count
            self.audit.record(
                "keys_file_loaded",
                {"path": self.path[-256:], "sha256": ring.sha256, "principals": names[:50], "count": len(names)},
            )

    def check(self) -> bool:
        """One poll; True when new keys were taken into use."""
        stat = self._stat_now()
        try:
            raw = Path(self.path).read_bytes() if stat is not None else None
        except OSError:
            raw = None
        digest = hashlib.sha256(raw).hexdigest() if raw is not None else "missing"
        if digest == self._seen and stat == self._stat:
            return False
        self._stat = stat
        if digest == self._seen:
            return False  # touched, same content
        self._seen = digest
        try:
            if raw is None:
                raise KeysFileError("cannot be read (missing?)")
            ring = parse_keys(raw, self.path)
        except KeysFileError as exc:
            log.error("keys file %s refused, the keys in use stay: %s", self.path, exc)
            if self.audit is not None:
                self.audit.record(
                    "keys_file_refused",
                    {"path": self.path[-256:], "sha256": digest if raw is not None else None, "error": str(exc)[:1024]},
                )
            return False
        self.use(ring)
        self.loaded(ring)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # never let the watcher die
                log.exception("keys file %s: reload failed; the keys in use stay", self.path)
