"""The Couchbase store's key-value layer: the connection (made on first use, on the running
loop) and the primitives the store is written in: get, insert/replace under CAS, read-modify-
write loops, sub-document index updates, counters. Every write is stamped with a token, so an
ambiguous one (a timeout, durability ambiguity) is resolved by reading the document back,
never by writing blindly again."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from datetime import timedelta
from typing import Any, Awaitable, Callable, TypeVar

from wojak.engine.store._base import StoreUnavailable
from wojak.engine.store._couchbase_codec import doc_key, path_key, write_token
from wojak.engine.store._couchbase_sdk import load_sdk

T = TypeVar("T")
CAS_ATTEMPTS = 2000  # contention on one position doc: every loser re-reads and re-decides
AMBIGUOUS_ATTEMPTS = 5


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failure nobody waits for any more is not logged as unretrieved


async def _uncancelled(operation: Awaitable[T]) -> T:
    """Await an SDK operation without ever cancelling the SDK's own future. The SDK completes it
    from its I/O thread (``call_soon_threadsafe(future.set_exception, ...)``); on a future already
    cancelled that raises InvalidStateError, which asyncio logs as an ERROR with a traceback, once
    per operation: every KV call under way when a caller gives up (a deadline, a batch's other
    account failing) during an outage. The caller still stops waiting at once; the operation ends
    by itself within its KV timeout, and a write sent may land either way, as before."""
    task = asyncio.ensure_future(operation)
    task.add_done_callback(_consume)
    return await asyncio.shield(task)


class Outcome:
    APPLIED = "applied"  # the document carries our write token
    ABSENT = "absent"  # no document: the write did not land
    OTHER = "other"  # another writer's version is there


async def resolve_ambiguous(get: Callable[[str], Awaitable[dict[str, Any] | None]], key: str, token: str) -> str:
    """After an ambiguous write of ``key`` stamped with ``token``: read it back and decide.

    ``get`` returns the document (or None if absent). Never rewrites anything itself.
    """
    doc = await get(key)
    if doc is None:
        return Outcome.ABSENT
    return Outcome.APPLIED if doc.get("_w") == token else Outcome.OTHER


async def backoff(attempt: int) -> None:
    await asyncio.sleep(0 if attempt < 2 else random.uniform(0, min(0.05, 0.001 * attempt)))


class CouchbaseKV:
    """A connection to one collection and the key-value primitives on it (keys get ``prefix``)."""

    def __init__(
        self,
        connstr: str,
        username: str,
        password: str,
        bucket: str,
        scope: str | None = None,
        collection: str | None = None,
        prefix: str = "",
        connect_timeout: float = 10.0,
        kv_timeout: float = 2.5,
    ) -> None:
        self._sdk = load_sdk()  # fails at construction, naming the extra, if the SDK is missing
        self.connstr, self.bucket_name = connstr, bucket
        self.scope_name, self.collection_name = scope, collection
        self.prefix = prefix
        self.connect_timeout, self.kv_timeout = connect_timeout, kv_timeout
        self._username, self._password = username, password
        self._cluster: Any = None
        self._coll: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    # -- connection -----------------------------------------------------------------

    async def _c(self) -> Any:
        """The collection, connecting on first use (on the running loop)."""
        if self._coll is not None:
            return self._coll
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._coll is not None:
                return self._coll
            sdk = self._sdk
            timeouts = sdk.ClusterTimeoutOptions(
                connect_timeout=timedelta(seconds=self.connect_timeout), kv_timeout=timedelta(seconds=self.kv_timeout)
            )
            options = sdk.ClusterOptions(sdk.PasswordAuthenticator(self._username, self._password), timeout_options=timeouts)
            cluster = None
            try:
                async with asyncio.timeout(self.connect_timeout + 1):
                    cluster = await sdk.Cluster.connect(self.connstr, options)
                    bucket = cluster.bucket(self.bucket_name)
                    await bucket.on_connect()
                    if self.scope_name or self.collection_name:
                        coll = bucket.scope(self.scope_name or "_default").collection(self.collection_name or "_default")
                    else:
                        coll = bucket.default_collection()
            except (TimeoutError, sdk.exc.CouchbaseException) as exc:
                if cluster is not None:
                    try:
                        await cluster.close()
                    except Exception:  # noqa: BLE001 - already failing
                        pass
                raise StoreUnavailable(
                    f"couchbase {self.connstr} bucket {self.bucket_name!r}: cannot connect"
                    f" ({type(exc).__name__}: {str(exc) or 'no answer within ' + str(self.connect_timeout) + 's'})"
                ) from exc
            self._cluster, self._coll, self._loop = cluster, coll, asyncio.get_running_loop()
            return coll

    async def close(self) -> None:
        cluster, self._cluster, self._coll = self._cluster, None, None
        if cluster is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover
            running = None
        if running is self._loop and running is not None:
            try:
                await cluster.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    async def _guard(self, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except self._sdk.unavailable as exc:
            raise StoreUnavailable(f"couchbase {self.connstr}: {type(exc).__name__}: {exc}") from exc

    async def probe(self) -> None:
        """Readiness: a heartbeat write (one upsert, under the store's KV timeout) goes through."""

        async def run() -> None:
            coll = await self._c()
            await _uncancelled(coll.upsert(self._k(f"health::{doc_key(socket.gethostname())}"), {"at": time.time()}))

        await self._guard(run())

    # -- key-value primitives ---------------------------------------------------------

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def _get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        coll = await self._c()
        try:
            result = await _uncancelled(coll.get(self._k(key)))
        except self._sdk.exc.DocumentNotFoundException:
            return None, 0
        return result.content_as[dict], result.cas

    async def _get_doc(self, key: str) -> dict[str, Any] | None:
        return (await self._get(key))[0]

    async def _get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for i in range(0, len(keys), 64):
            out.extend(await asyncio.gather(*(self._get_doc(k) for k in keys[i : i + 64])))
        return out

    async def _insert(self, key: str, doc: dict[str, Any]) -> bool:
        """Create ``key`` if absent: True if we created it, False if it already existed."""
        return await self._insert_cas(key, doc) is not None

    async def _insert_cas(self, key: str, doc: dict[str, Any]) -> int | None:
        """Create ``key`` if absent: the new CAS if we created it, None if it already existed."""
        coll = await self._c()
        token = doc["_w"] = write_token()
        seen = {"cas": 0}

        async def get(k: str) -> dict[str, Any] | None:
            found, seen["cas"] = await self._get(k)
            return found

        for _ in range(AMBIGUOUS_ATTEMPTS):
            try:
                return (await _uncancelled(coll.insert(self._k(key), doc))).cas
            except self._sdk.exc.DocumentExistsException:
                # ours if an earlier ambiguous attempt of this very write landed
                return seen["cas"] if await resolve_ambiguous(get, key, token) == Outcome.APPLIED else None
            except self._sdk.ambiguous:
                outcome = await resolve_ambiguous(get, key, token)
                if outcome != Outcome.ABSENT:
                    return seen["cas"] if outcome == Outcome.APPLIED else None
        raise StoreUnavailable(f"couchbase: insert of {key!r} stayed ambiguous")

    async def _replace(self, key: str, doc: dict[str, Any], cas: int) -> bool:
        """Replace ``key`` if it is still at ``cas``: False if another writer got there first."""
        return await self._replace_cas(key, doc, cas) is not None

    async def _replace_cas(self, key: str, doc: dict[str, Any], cas: int) -> int | None:
        """Replace ``key`` if it is still at ``cas``: the new CAS, or None if another writer got
        there first."""
        coll = await self._c()
        token = doc["_w"] = write_token()
        for _ in range(AMBIGUOUS_ATTEMPTS):
            try:
                return (await _uncancelled(coll.replace(self._k(key), doc, self._sdk.ReplaceOptions(cas=cas)))).cas
            except (
                self._sdk.exc.CasMismatchException,
                self._sdk.exc.DocumentNotFoundException,
                self._sdk.exc.DocumentExistsException,
            ):
                return None
            except self._sdk.ambiguous:
                current, current_cas = await self._get(key)
                if current is not None and current.get("_w") == token:
                    return current_cas
                if current is None or current_cas != cas:
                    return None
                # unchanged: the write did not land; the CAS makes a retry at-most-once
        raise StoreUnavailable(f"couchbase: replace of {key!r} stayed ambiguous")

    async def _put(self, key: str, doc: dict[str, Any], cas: int) -> bool:
        """Insert (cas == 0) or replace at ``cas``; False on a lost race."""
        return await self._put_cas(key, doc, cas) is not None

    async def _put_cas(self, key: str, doc: dict[str, Any], cas: int) -> int | None:
        """Insert (cas == 0) or replace at ``cas``: the new CAS, or None on a lost race."""
        return await (self._insert_cas(key, doc) if cas == 0 else self._replace_cas(key, doc, cas))

    async def _mutate(self, key: str, specs: list[Any], ignore: tuple[type[BaseException], ...] = ()) -> None:
        """An idempotent sub-document mutation on an index doc, created if missing; retried."""
        coll = await self._c()
        options = self._sdk.MutateInOptions(store_semantics=self._sdk.StoreSemantics.UPSERT)
        for _ in range(AMBIGUOUS_ATTEMPTS):
            try:
                await _uncancelled(coll.mutate_in(self._k(key), specs, options))
                return
            except ignore:
                return
            except self._sdk.ambiguous:
                continue  # idempotent: doing it again is the lookup
        raise StoreUnavailable(f"couchbase: sub-document update of {key!r} stayed ambiguous")

    async def _index_add(self, key: str, value: str) -> None:
        await self._mutate(
            key, [self._sdk.sd.array_addunique("k", value, create_parents=True)], ignore=(self._sdk.exc.PathExistsException,)
        )

    async def _index_list(self, key: str) -> list[str]:
        doc = await self._get_doc(key)
        return list(dict.fromkeys(doc.get("k", []))) if doc else []

    async def _map_put(self, key: str, member: str, value: Any) -> None:
        await self._mutate(key, [self._sdk.sd.upsert(f"m.{path_key(member)}", value, create_parents=True)])

    async def _map_remove(self, key: str, member: str) -> None:
        coll = await self._c()
        for _ in range(AMBIGUOUS_ATTEMPTS):
            try:
                await _uncancelled(coll.mutate_in(self._k(key), [self._sdk.sd.remove(f"m.{path_key(member)}")]))
                return
            except (self._sdk.exc.PathNotFoundException, self._sdk.exc.DocumentNotFoundException):
                return
            except self._sdk.ambiguous:
                continue
        raise StoreUnavailable(f"couchbase: sub-document remove on {key!r} stayed ambiguous")

    async def _map_values(self, key: str) -> list[Any]:
        doc = await self._get_doc(key)
        return list((doc or {}).get("m", {}).values())

    async def _next_seq(self, key: str = "idx::seq") -> int:
        """Increment the counter ``key`` (created at 1): its new value. Not idempotent: an
        ambiguous increment is retried and may skip a number, which every user tolerates."""
        coll = await self._c()
        sdk = self._sdk
        for _ in range(AMBIGUOUS_ATTEMPTS):
            try:
                initial = sdk.IncrementOptions(initial=sdk.SignedInt64(1))
                result = await _uncancelled(coll.binary().increment(self._k(key), initial))
                return int(result.content)
            except self._sdk.ambiguous:
                continue
        raise StoreUnavailable(f"couchbase: increment of {key!r} stayed ambiguous")

    async def _counter(self, key: str) -> int:
        """The counter's value (0 if it was never incremented)."""
        coll = await self._c()
        try:
            result = await _uncancelled(coll.get(self._k(key)))
        except self._sdk.exc.DocumentNotFoundException:
            return 0
        return int(result.content_as[int])

    async def _cas_loop(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> None:
        """Read-modify-write ``key`` with CAS until it sticks; ``change`` returns None for no write."""
        for attempt in range(CAS_ATTEMPTS):
            doc, cas = await self._get(key)
            new = change(doc)
            if new is None or await self._put(key, new, cas):
                return
            await backoff(attempt)
        raise StoreUnavailable(f"couchbase: {key!r} stayed contended")
