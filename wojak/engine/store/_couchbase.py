"""The Couchbase store: key-value and sub-document operations only (no query service).

The ``couchbase`` SDK (4.x, ``acouchbase``) is imported lazily, here only; install it with
``pip install 'wojak[couchbase]'``. The cluster is connected on the first call, on the
running loop (asyncio or uvloop), with a bounded timeout.

Documents (every key starts with the store's ``prefix``):

- ``order::<coid>``: the order (``to_wire`` + fingerprint), plus ``ver`` (transitions
  recorded), ``fills`` (trades recorded), ``seq`` (admission order) and, while a recorded
  outcome is being applied, ``fx`` (its effect on the tradebook and the position).
- ``pos::<account>::<symbol>``: quantity, average price, realised P&L, and ``res``, one
  entry per order holding a reservation: ``{"c": coid, "q": signed remaining, "v": last
  applied ``ver``, "t": when}`` plus ``"u"``, the order's loss per unit, if it reserved one.
  ``pending_buy`` / ``pending_sell`` / ``pending_loss`` (sum of ``u`` x ``|q|``) are derived
  from ``res``, so releasing a reservation is as idempotent as moving ``q``.
- ``trade::<coid>#<n>`` (n = the order's n-th fill, so a replay is a no-op insert),
  ``tick::<symbol>``, ``esc::<coid>`` (the escalation outbox).
- Index documents, because there is no query service: ``idx::orders``, ``idx::trades``,
  ``idx::positions``, ``idx::ticks`` (arrays, sub-document ``array_addunique``),
  ``idx::open`` (map of orders that may hold a reservation or an unapplied effect: the
  recovery scan) and ``idx::esc`` (map of undelivered escalations), sub-document
  ``upsert`` / ``remove``; ``idx::seq`` is a counter. Index entries are written *before*
  the document they point to, so a crash leaves at most a dangling entry (skipped when
  read), never an unlisted document.

Listing (``list_orders``, ``list_trades``, ``list_positions``, ``pending_orders``,
``load_ticks``, ``undelivered_escalations``) reads the index and then every document it
names: O(n) key-value gets, meant for test and dev-sized data sets, not for a production
orderbook of millions (that wants range scans or a query index off the hot path).

Crash safety:

- ``admit``: reservation first (position CAS, ``res[coid]`` overwritten, never added to,
  so a retry cannot double-reserve; ``decide`` sees the position without this coid's own
  entry), then ``insert`` the order (the arbiter: exactly one writer creates a coid). A
  loser removes the reservation only if the winner's record cannot hold one. A crash
  between the two leaves a conservative (too large) reservation, which a resend
  overwrites and the recovery scan drops after ``orphan_after`` seconds.
- ``record``: the order doc is the commit point: one CAS moves its state *and* stores the
  effect (``fx``); then the trade is inserted, the position is updated (skipped if its
  ``res[coid].v`` already shows this effect) and ``fx`` is cleared. Whoever sees an ``fx``
  (the next ``record`` of that order, or ``pending_orders`` at engine start) rolls it
  forward first, so a crash anywhere loses nothing and applies nothing twice.
- Ambiguous writes (timeouts, durability ambiguity) are resolved by reading the document
  back (each write stamps a unique ``_w`` token), never by blindly writing again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any, Awaitable, Callable, TypeVar

from wojak.engine.domain import Order, OrderState, Position, Side
from wojak.engine.domain._orders import OPEN_STATES
from wojak.engine.store._base import AccountView, Decide, Execution, StoreUnavailable, Trade, utc_day

T = TypeVar("T")
EXTRA_HINT = "the Couchbase store needs the couchbase SDK: pip install 'wojak[couchbase]'"
_CAS_ATTEMPTS = 2000  # contention on one position doc: every loser re-reads and re-decides
_AMBIGUOUS_ATTEMPTS = 5
_ZERO = Decimal(0)


def _sdk():
    """The SDK modules, imported on first use."""
    try:
        import couchbase.exceptions as exc
        import couchbase.subdocument as sd
        from acouchbase.cluster import Cluster
        from couchbase.auth import PasswordAuthenticator
        from couchbase.options import (
            ClusterOptions,
            ClusterTimeoutOptions,
            IncrementOptions,
            InsertOptions,
            MutateInOptions,
            ReplaceOptions,
            SignedInt64,
        )
        from couchbase.subdocument import StoreSemantics
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(EXTRA_HINT) from e
    return _Sdk(exc, sd, Cluster, PasswordAuthenticator, ClusterOptions, ClusterTimeoutOptions, IncrementOptions,
                InsertOptions, MutateInOptions, ReplaceOptions, SignedInt64, StoreSemantics)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Sdk:
    exc: Any
    sd: Any
    Cluster: Any
    PasswordAuthenticator: Any
    ClusterOptions: Any
    ClusterTimeoutOptions: Any
    IncrementOptions: Any
    InsertOptions: Any
    MutateInOptions: Any
    ReplaceOptions: Any
    SignedInt64: Any
    StoreSemantics: Any

    @property
    def ambiguous(self) -> tuple[type[BaseException], ...]:
        e = self.exc
        return (e.AmbiguousTimeoutException, e.DurabilitySyncWriteAmbiguousException, e.RequestCanceledException)

    @property
    def unavailable(self) -> tuple[type[BaseException], ...]:
        e = self.exc
        return (e.AmbiguousTimeoutException, e.UnAmbiguousTimeoutException, e.TimeoutException,
                e.ServiceUnavailableException, e.RequestCanceledException, e.TemporaryFailException,
                e.MissingConnectionException, e.DurabilitySyncWriteAmbiguousException,
                e.DurabilitySyncWriteInProgressException, e.DocumentLockedException)  # fmt: skip


# -- encoding ---------------------------------------------------------------------------


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _path_key(value: str) -> str:
    """A map key safe in a sub-document path (``.``, ``[``, ``]`` and backquote escaped)."""
    for ch, rep in (("%", "%25"), (".", "%2E"), ("[", "%5B"), ("]", "%5D"), ("`", "%60")):
        value = value.replace(ch, rep)
    return value


def _doc_key(value: str) -> str:
    """A key component that cannot contain the ``::`` separator."""
    return value.replace("%", "%25").replace(":", "%3A")


def _order_doc(o: Order) -> dict[str, Any]:
    doc = o.to_wire()
    doc["fingerprint"] = o.fingerprint
    return doc


def _order_from_doc(d: dict[str, Any]) -> Order:
    return Order(
        client_order_id=d["client_order_id"], account=d["account"], symbol=d["symbol"], side=Side(d["side"]),
        quantity=Decimal(d["quantity"]), order_type=d["order_type"], limit_price=_d(d["limit_price"]),
        time_in_force=d["time_in_force"], tag=d["tag"], fingerprint=d["fingerprint"], state=OrderState(d["state"]),
        filled_quantity=Decimal(d["filled_quantity"]), average_price=_d(d["average_price"]),
        venue_order_id=d["venue_order_id"], reason=d["reason"], created_at=d["created_at"], updated_at=d["updated_at"],
    )  # fmt: skip


def _position_from_doc(d: dict[str, Any] | None, account: str, symbol: str, exclude: str | None = None) -> Position:
    if d is None:
        return Position(account, symbol)
    p = Position(account, symbol, Decimal(d["quantity"]), Decimal(d["average_price"]), Decimal(d["realised_pnl"]))
    for entry in d.get("res", {}).values():
        q = Decimal(entry["q"])
        if entry["c"] != exclude and q:
            u = entry.get("u")
            p.reserve(q, Decimal(u) * abs(q) if u else _ZERO)
    return p


def _new_position_doc(account: str, symbol: str) -> dict[str, Any]:
    return {"account": account, "symbol": symbol, "quantity": "0", "average_price": "0", "realised_pnl": "0", "res": {}}


def _token() -> str:
    return uuid.uuid4().hex


# -- ambiguity ---------------------------------------------------------------------------


class _Outcome:
    APPLIED = "applied"  # the document carries our write token
    ABSENT = "absent"  # no document: the write did not land
    OTHER = "other"  # another writer's version is there


async def resolve_ambiguous(get: Callable[[str], Awaitable[dict[str, Any] | None]], key: str, token: str) -> str:
    """After an ambiguous write of ``key`` stamped with ``token``: read it back and decide.

    ``get`` returns the document (or None if absent). Never rewrites anything itself.
    """
    doc = await get(key)
    if doc is None:
        return _Outcome.ABSENT
    return _Outcome.APPLIED if doc.get("_w") == token else _Outcome.OTHER


class CouchbaseStore:
    """The Store protocol on Couchbase (see the module docstring for the layout)."""

    def __init__(self, connstr: str, username: str, password: str, bucket: str, scope: str | None = None,
                 collection: str | None = None, prefix: str = "", connect_timeout: float = 10.0,
                 kv_timeout: float = 2.5, orphan_after: float = 300.0) -> None:  # fmt: skip
        _sdk()  # fail at construction, with the extra's name, if the SDK is missing
        self.connstr, self.bucket_name = connstr, bucket
        self.scope_name, self.collection_name = scope, collection
        self.prefix = prefix
        self.connect_timeout, self.kv_timeout, self.orphan_after = connect_timeout, kv_timeout, orphan_after
        self._username, self._password = username, password
        self._cluster: Any = None
        self._coll: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._sdk = _sdk()

    def __repr__(self) -> str:
        return f"CouchbaseStore({self.connstr!r}, bucket={self.bucket_name!r}, prefix={self.prefix!r})"

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
            timeouts = sdk.ClusterTimeoutOptions(connect_timeout=timedelta(seconds=self.connect_timeout),
                                                 kv_timeout=timedelta(seconds=self.kv_timeout))  # fmt: skip
            options = sdk.ClusterOptions(sdk.PasswordAuthenticator(self._username, self._password),
                                         timeout_options=timeouts)  # fmt: skip
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
                    f" ({type(exc).__name__}: {exc or 'no answer within ' + str(self.connect_timeout) + 's'})"
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

    # -- key-value primitives ---------------------------------------------------------

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def _get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        coll = await self._c()
        try:
            result = await coll.get(self._k(key))
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
        coll = await self._c()
        token = doc["_w"] = _token()
        for _ in range(_AMBIGUOUS_ATTEMPTS):
            try:
                await coll.insert(self._k(key), doc)
                return True
            except self._sdk.exc.DocumentExistsException:
                # ours if an earlier ambiguous attempt of this very write landed
                return await resolve_ambiguous(self._get_doc, key, token) == _Outcome.APPLIED
            except self._sdk.ambiguous:
                outcome = await resolve_ambiguous(self._get_doc, key, token)
                if outcome != _Outcome.ABSENT:
                    return outcome == _Outcome.APPLIED
        raise StoreUnavailable(f"couchbase: insert of {key!r} stayed ambiguous")

    async def _replace(self, key: str, doc: dict[str, Any], cas: int) -> bool:
        """Replace ``key`` if it is still at ``cas``: False if another writer got there first."""
        coll = await self._c()
        token = doc["_w"] = _token()
        for _ in range(_AMBIGUOUS_ATTEMPTS):
            try:
                await coll.replace(self._k(key), doc, self._sdk.ReplaceOptions(cas=cas))
                return True
            except (self._sdk.exc.CasMismatchException, self._sdk.exc.DocumentNotFoundException,
                    self._sdk.exc.DocumentExistsException):  # fmt: skip
                return False
            except self._sdk.ambiguous:
                current, current_cas = await self._get(key)
                if current is not None and current.get("_w") == token:
                    return True
                if current is None or current_cas != cas:
                    return False
                # unchanged: the write did not land; the CAS makes a retry at-most-once
        raise StoreUnavailable(f"couchbase: replace of {key!r} stayed ambiguous")

    async def _put(self, key: str, doc: dict[str, Any], cas: int) -> bool:
        """Insert (cas == 0) or replace at ``cas``; False on a lost race."""
        return await (self._insert(key, doc) if cas == 0 else self._replace(key, doc, cas))

    async def _mutate(self, key: str, specs: list[Any], ignore: tuple[type[BaseException], ...] = ()) -> None:
        """An idempotent sub-document mutation on an index doc, created if missing; retried."""
        coll = await self._c()
        options = self._sdk.MutateInOptions(store_semantics=self._sdk.StoreSemantics.UPSERT)
        for _ in range(_AMBIGUOUS_ATTEMPTS):
            try:
                await coll.mutate_in(self._k(key), specs, options)
                return
            except ignore:
                return
            except self._sdk.ambiguous:
                continue  # idempotent: doing it again is the lookup
        raise StoreUnavailable(f"couchbase: sub-document update of {key!r} stayed ambiguous")

    async def _index_add(self, key: str, value: str) -> None:
        await self._mutate(key, [self._sdk.sd.array_addunique("k", value, create_parents=True)],
                           ignore=(self._sdk.exc.PathExistsException,))  # fmt: skip

    async def _index_list(self, key: str) -> list[str]:
        doc = await self._get_doc(key)
        return list(dict.fromkeys(doc.get("k", []))) if doc else []

    async def _map_put(self, key: str, member: str, value: Any) -> None:
        await self._mutate(key, [self._sdk.sd.upsert(f"m.{_path_key(member)}", value, create_parents=True)])

    async def _map_remove(self, key: str, member: str) -> None:
        coll = await self._c()
        for _ in range(_AMBIGUOUS_ATTEMPTS):
            try:
                await coll.mutate_in(self._k(key), [self._sdk.sd.remove(f"m.{_path_key(member)}")])
                return
            except (self._sdk.exc.PathNotFoundException, self._sdk.exc.DocumentNotFoundException):
                return
            except self._sdk.ambiguous:
                continue
        raise StoreUnavailable(f"couchbase: sub-document remove on {key!r} stayed ambiguous")

    async def _map_values(self, key: str) -> list[Any]:
        doc = await self._get_doc(key)
        return list((doc or {}).get("m", {}).values())

    async def _next_seq(self) -> int:
        coll = await self._c()
        sdk = self._sdk
        result = await coll.binary().increment(self._k("idx::seq"), sdk.IncrementOptions(initial=sdk.SignedInt64(1)))
        return int(result.content)

    async def _cas_loop(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> None:
        """Read-modify-write ``key`` with CAS until it sticks; ``change`` returns None for no write."""
        for attempt in range(_CAS_ATTEMPTS):
            doc, cas = await self._get(key)
            new = change(doc)
            if new is None or await self._put(key, new, cas):
                return
            await _backoff(attempt)
        raise StoreUnavailable(f"couchbase: {key!r} stayed contended")

    # -- keys -----------------------------------------------------------------------

    @staticmethod
    def _order_key(coid: str) -> str:
        return f"order::{coid}"

    @staticmethod
    def _pos_key(account: str, symbol: str) -> str:
        return f"pos::{_doc_key(account)}::{_doc_key(symbol)}"

    @staticmethod
    def _acct_key(account: str) -> str:
        return f"acct::{_doc_key(account)}"

    async def _account_view(self, order: Order, acct: dict[str, Any] | None, day: str,
                            now: float) -> tuple[AccountView, dict[str, Any] | None, int]:  # fmt: skip
        """The account as risk sees it: every position it holds (this order's own earlier
        reservation excluded), today's realised P&L, the order-rate window, the stored state.
        Returns the view and the order symbol's position doc with its CAS."""
        account = order.account
        symbols = list(dict.fromkeys([order.symbol, *((acct or {}).get("symbols") or [])]))
        got = await asyncio.gather(*(self._get(self._pos_key(account, s)) for s in symbols))
        view = AccountView(account, {}, day=day, now=now)
        realised = Decimal(0)
        for symbol, (pdoc, _) in zip(symbols, got):
            view.positions[symbol] = _position_from_doc(pdoc, account, symbol, exclude=order.client_order_id)
            if pdoc is not None:
                realised += Decimal((pdoc.get("days") or {}).get(day, "0"))
        view.realised_today = realised
        sec = int(now)
        for s, n in ((acct or {}).get("rate") or {}).items():
            if int(s) > sec - 60:
                view.orders_last_minute += n
                if int(s) == sec:
                    view.orders_last_second += n
        state = (acct or {}).get("state")
        view.state = state["state"] if state else None
        doc, cas = got[0]
        return view, doc, cas

    async def get_account_state(self, account: str) -> dict[str, Any] | None:
        doc = await self._guard(self._get_doc(self._acct_key(account)))
        return (doc or {}).get("state") or None

    async def set_account_state(self, account: str, state: str | None, reason: str = "") -> None:
        async def run() -> None:
            await self._index_add("idx::accounts", account)

            def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
                new = dict(doc) if doc is not None else {"account": account, "symbols": [], "rate": {}}
                new["state"] = None if state is None else {"account": account, "state": state, "reason": reason,
                                                           "at": time.time()}  # fmt: skip
                return new

            await self._cas_loop(self._acct_key(account), change)

        await self._guard(run())

    async def list_account_states(self) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            accounts = await self._index_list("idx::accounts")
            docs = await self._get_many([self._acct_key(a) for a in accounts])
            return sorted((d["state"] for d in docs if d and d.get("state")), key=lambda s: s["account"])

        return await self._guard(run())

    async def daily_realised(self, account: str, day: str) -> Decimal:
        async def run() -> Decimal:
            acct = await self._get_doc(self._acct_key(account))
            symbols = (acct or {}).get("symbols") or []
            docs = await self._get_many([self._pos_key(account, s) for s in symbols])
            return sum((Decimal((d.get("days") or {}).get(day, "0")) for d in docs if d), Decimal(0))

        return await self._guard(run())

    # -- the order path -------------------------------------------------------------

    async def admit(self, orders: list[Order], decide: Decide, day: str = "") -> list[tuple[Order, bool]]:
        return await self._guard(self._admit(orders, decide, day))

    async def _admit(self, orders: list[Order], decide: Decide, day: str) -> list[tuple[Order, bool]]:
        results = []
        day = day or utc_day()
        for order in orders:  # in order: decide sees this batch's earlier reservations
            results.append(await self._admit_one(order, decide, day))
        return results

    async def _admit_one(self, order: Order, decide: Decide, day: str) -> tuple[Order, bool]:
        coid = order.client_order_id
        okey = self._order_key(coid)
        existing = await self._get_doc(okey)
        if existing is not None:
            return _order_from_doc(existing), True
        pkey = self._pos_key(order.account, order.symbol)
        akey = self._acct_key(order.account)
        snapshot = dataclasses.replace(order)
        await self._index_add("idx::orders", coid)
        await self._map_put("idx::open", coid, {"c": coid, "p": pkey, "t": time.time()})
        await self._index_add("idx::positions", pkey)
        await self._index_add("idx::accounts", order.account)
        seq = await self._next_seq()
        escalation: dict[str, Any] | None = None
        had_stale = False
        for attempt in range(_CAS_ATTEMPTS):
            for f in dataclasses.fields(Order):  # a retry decides afresh, from the order as given
                setattr(order, f.name, getattr(snapshot, f.name))
            # the account doc is the gate: its CAS, taken last, serialises decisions on the account
            acct, acct_cas = await self._get(akey)
            now = time.time()
            view, doc, cas = await self._account_view(order, acct, day, now)
            mine = (doc or {}).get("res", {}).get(_path_key(coid))
            if mine is not None and mine.get("v", 0) > 0:
                # an outcome of this coid is already recorded: its order exists (another writer)
                found = await self._get_doc(okey)
                if found is not None:
                    return _order_from_doc(found), True
            had_stale = mine is not None
            order.created_at = order.updated_at = now
            view.loss_per_unit = _ZERO
            escalation = decide(order, view)
            if order.state is not OrderState.PENDING and view.halt is None:
                break  # no reservation to take: the order doc decides alone
            if order.state is OrderState.PENDING:
                new = dict(doc) if doc is not None else _new_position_doc(order.account, order.symbol)
                new["res"] = dict(new.get("res", {}))
                entry = {"c": coid, "q": str(order.signed_quantity), "v": 0, "t": time.time()}
                if view.loss_per_unit > 0:
                    entry["u"] = str(view.loss_per_unit)
                new["res"][_path_key(coid)] = entry
                if not await self._put(pkey, new, cas):
                    await _backoff(attempt)
                    continue
            if await self._put(akey, _next_account_doc(acct, order, view, now), acct_cas):
                break
            await _backoff(attempt)  # another order of the account got in: decide again
        else:
            raise StoreUnavailable(f"couchbase: account {akey!r} stayed contended")
        if order.state is OrderState.ESCALATED and escalation is not None:
            # the outbox entry first; it counts only once the order doc says escalated
            await self._map_put("idx::esc", coid, coid)
            esc = {"key": f"esc:{coid}", "client_order_id": coid, "payload": json.loads(json.dumps(escalation, default=str)),
                   "created_at": time.time(), "delivered_at": None}  # fmt: skip
            await self._upsert_if_absent(f"esc::{coid}", esc)
        record = _order_doc(order)
        record.update(ver=0, fills=0, seq=seq)
        if await self._insert(okey, record):
            if order.state is not OrderState.PENDING:
                if had_stale:  # a crashed earlier attempt reserved for this coid: give it back
                    await self._drop_reservation(pkey, coid)
                await self._map_remove("idx::open", coid)
            return order, False
        # another writer created this coid first: its record stands
        winner_doc = await self._get_doc(okey)
        if winner_doc is None:  # pragma: no cover - orders are never deleted
            raise StoreUnavailable(f"couchbase: {okey!r} vanished")
        winner = _order_from_doc(winner_doc)
        if order.state is OrderState.PENDING and winner.state not in OPEN_STATES and not winner_doc.get("fx"):
            await self._drop_reservation(pkey, coid)
        return winner, True

    async def _upsert_if_absent(self, key: str, doc: dict[str, Any]) -> None:
        await self._insert(key, doc)  # an existing entry (an earlier attempt's) is just as good

    async def _drop_reservation(self, pkey: str, coid: str) -> None:
        def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or _path_key(coid) not in doc.get("res", {}):
                return None
            new = dict(doc)
            new["res"] = {k: v for k, v in doc["res"].items() if k != _path_key(coid)}
            return new

        await self._cas_loop(pkey, change)

    async def record(self, executions: list[Execution]) -> None:
        await self._guard(self._record(executions))

    async def _record(self, executions: list[Execution]) -> None:
        for ex in executions:
            ex.applied = await self._record_one(ex)

    async def _record_one(self, ex: Execution) -> bool:
        o = ex.order
        okey = self._order_key(o.client_order_id)
        for attempt in range(_CAS_ATTEMPTS):
            doc, cas = await self._get(okey)
            if doc is None:
                return False
            if doc.get("fx"):
                await self._roll_forward(doc)  # an earlier outcome first: effects apply in order
                continue
            if doc["state"] != ex.expected_state.value:
                return False
            now = time.time()
            o.updated_at = now
            new = _order_doc(o)
            for k in ("created_at", "seq", "fingerprint"):
                new[k] = doc[k]
            ver = doc.get("ver", 0) + 1
            fills = doc.get("fills", 0)
            fx: dict[str, Any] = {"v": ver, "release": str(ex.release), "close": o.state not in OPEN_STATES, "day": ex.day,
                                  "account": doc["account"], "symbol": doc["symbol"], "coid": o.client_order_id}  # fmt: skip
            if ex.fill_quantity > 0 and ex.fill_price is not None:
                fills += 1
                signed = ex.fill_quantity if o.side is Side.BUY else -ex.fill_quantity
                fx["fill"] = {"q": str(signed), "p": str(ex.fill_price), "m": str(ex.multiplier)}
                fx["trade"] = Trade(f"{o.client_order_id}#{fills}", o.client_order_id, doc["account"], doc["symbol"],
                                    doc["side"], ex.fill_quantity, ex.fill_price, o.venue_order_id, now).to_wire()  # fmt: skip
            new.update(ver=ver, fills=fills, fx=fx)
            if await self._replace(okey, new, cas):  # the commit point
                await self._roll_forward(new)
                return True
            await _backoff(attempt)
        raise StoreUnavailable(f"couchbase: order {okey!r} stayed contended")

    async def _roll_forward(self, order_doc: dict[str, Any]) -> None:
        """Apply a committed outcome's effects (idempotent), then clear it from the order."""
        fx = order_doc["fx"]
        coid, ver = fx["coid"], fx["v"]
        pkey = self._pos_key(fx["account"], fx["symbol"])
        trade = fx.get("trade")
        if trade is not None:
            await self._index_add("idx::trades", trade["trade_id"])
            await self._insert(f"trade::{trade['trade_id']}", dict(trade))

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            new = dict(doc) if doc is not None else _new_position_doc(fx["account"], fx["symbol"])
            res = new["res"] = dict(new.get("res", {}))
            entry = res.get(_path_key(coid))
            if entry is not None and entry["v"] >= ver:
                return None  # already applied
            position = _position_from_doc(new, fx["account"], fx["symbol"])
            fill = fx.get("fill")
            if fill is not None:
                pnl = position.fill(Decimal(fill["q"]), Decimal(fill["p"]), Decimal(fill["m"]))
                if pnl:
                    day = fx.get("day") or utc_day()
                    days = new["days"] = {d: v for d, v in (new.get("days") or {}).items() if d >= _days_ago(day, 7)}
                    days[day] = str(Decimal(days.get(day, "0")) + pnl)
            new.update(quantity=str(position.quantity), average_price=str(position.average_price),
                       realised_pnl=str(position.realised_pnl))  # fmt: skip
            q = Decimal(entry["q"]) if entry is not None else Decimal(0)
            release = Decimal(fx["release"])
            if fx["close"]:
                q = Decimal(0)
            elif release and q:
                q = max(q - release, Decimal(0)) if q > 0 else min(q - release, Decimal(0))
            kept = {"c": coid, "q": str(q), "v": ver, "t": entry["t"] if entry else time.time()}
            if entry is not None and entry.get("u"):
                kept["u"] = entry["u"]
            res[_path_key(coid)] = kept
            return new

        await self._cas_loop(pkey, apply)

        okey = self._order_key(coid)

        def clear(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or (doc.get("fx") or {}).get("v") != ver:
                return None
            return {k: v for k, v in doc.items() if k != "fx"}

        await self._cas_loop(okey, clear)
        if fx["close"]:  # the position's marker for this order is no longer needed
            await self._drop_reservation(pkey, coid)
            await self._map_remove("idx::open", coid)

    # -- reads ----------------------------------------------------------------------

    async def get_order(self, client_order_id: str) -> Order | None:
        doc = await self._guard(self._get_doc(self._order_key(client_order_id)))
        return None if doc is None else _order_from_doc(doc)

    async def _all_orders(self) -> list[dict[str, Any]]:
        coids = await self._index_list("idx::orders")
        docs = await self._get_many([self._order_key(c) for c in coids])
        return [d for d in docs if d is not None]

    async def list_orders(self, limit: int = 100, account: str | None = None) -> list[Order]:
        docs = await self._guard(self._all_orders())
        docs = [d for d in docs if account is None or d["account"] == account]
        docs.sort(key=lambda d: (d["created_at"], d.get("seq", 0)), reverse=True)
        return [_order_from_doc(d) for d in docs[:limit]]

    async def list_trades(self, limit: int = 100, client_order_id: str | None = None) -> list[Trade]:
        return await self._guard(self._list_trades(limit, client_order_id))

    async def _list_trades(self, limit: int, client_order_id: str | None) -> list[Trade]:
        if client_order_id is not None:
            order = await self._get_doc(self._order_key(client_order_id))
            n = (order or {}).get("fills", 0)
            ids = [f"{client_order_id}#{i}" for i in range(1, n + 1)]
        else:
            ids = await self._index_list("idx::trades")
        docs = [d for d in await self._get_many([f"trade::{i}" for i in ids]) if d is not None]
        docs.sort(key=lambda d: (d["executed_at"], int(d["trade_id"].rsplit("#", 1)[1])), reverse=True)
        return [Trade(d["trade_id"], d["client_order_id"], d["account"], d["symbol"], d["side"],
                      Decimal(d["quantity"]), Decimal(d["price"]), d["venue_order_id"], d["executed_at"])
                for d in docs[:limit]]  # fmt: skip

    async def get_position(self, account: str, symbol: str) -> Position:
        doc = await self._guard(self._get_doc(self._pos_key(account, symbol)))
        return _position_from_doc(doc, account, symbol)

    async def list_positions(self, account: str | None = None) -> list[Position]:
        async def run() -> list[Position]:
            keys = await self._index_list("idx::positions")
            docs = [d for d in await self._get_many(keys) if d is not None]
            return [_position_from_doc(d, d["account"], d["symbol"]) for d in docs
                    if account is None or d["account"] == account]  # fmt: skip

        positions = await self._guard(run())
        return sorted(positions, key=lambda p: (p.account, p.symbol))

    async def pending_orders(self) -> list[Order]:
        """Orders still ``pending``; also the recovery scan (rolls forward unapplied effects,
        drops reservations of orders that are closed or were never created)."""
        return await self._guard(self._pending_orders())

    async def _pending_orders(self) -> list[Order]:
        entries = await self._map_values("idx::open")
        docs = await self._get_many([self._order_key(e["c"]) for e in entries])
        pending = []
        now = time.time()
        for entry, doc in zip(entries, docs):
            coid = entry["c"]
            if doc is None:
                if now - entry["t"] > self.orphan_after:  # an admit that crashed before its insert
                    await self._drop_reservation(entry["p"], coid)
                    await self._map_remove("idx::open", coid)
                continue
            if doc.get("fx"):
                await self._roll_forward(doc)
                doc = await self._get_doc(self._order_key(coid)) or doc
            state = OrderState(doc["state"])
            if state is OrderState.PENDING:
                pending.append(doc)
            elif state not in OPEN_STATES and not doc.get("fx"):
                await self._drop_reservation(entry["p"], coid)
                await self._map_remove("idx::open", coid)
        pending.sort(key=lambda d: (d["created_at"], d.get("seq", 0)))
        return [_order_from_doc(d) for d in pending]

    async def put_ticks(self, ticks: list[dict[str, Any]]) -> None:
        async def run() -> None:
            now = time.time()
            coll = await self._c()
            for t in ticks:
                await self._index_add("idx::ticks", t["symbol"])
                doc = {"symbol": t["symbol"], "bid": str(t["bid"]), "ask": str(t["ask"]), "last": str(t["last"]),
                       "received_at": now}  # fmt: skip
                await coll.upsert(self._k(f"tick::{_doc_key(t['symbol'])}"), doc)  # last writer wins: idempotent

        await self._guard(run())

    async def load_ticks(self) -> dict[str, dict[str, Any]]:
        async def run() -> dict[str, dict[str, Any]]:
            symbols = await self._index_list("idx::ticks")
            docs = await self._get_many([f"tick::{_doc_key(s)}" for s in symbols])
            return {d["symbol"]: d for d in docs if d is not None}

        return await self._guard(run())

    async def undelivered_escalations(self, limit: int = 100) -> list[dict[str, Any]]:
        """The outbox: an entry counts once its order is recorded ``escalated``."""

        async def run() -> list[dict[str, Any]]:
            coids = await self._map_values("idx::esc")
            escs = await self._get_many([f"esc::{c}" for c in coids])
            orders = await self._get_many([self._order_key(c) for c in coids])
            out = []
            for coid, esc, order in zip(coids, escs, orders):
                if esc is None or order is None:
                    continue  # not committed yet (or never will be: harmless)
                if esc.get("delivered_at") is not None or order["state"] != OrderState.ESCALATED.value:
                    await self._map_remove("idx::esc", coid)  # delivered, or written by an attempt that lost
                    continue
                out.append({k: esc[k] for k in ("key", "client_order_id", "payload", "created_at")})
            out.sort(key=lambda e: e["created_at"])
            return out[:limit]

        return await self._guard(run())

    async def mark_escalations_delivered(self, keys: list[str]) -> None:
        async def run() -> None:
            now = time.time()
            for key in keys:
                if not key.startswith("esc:"):
                    continue
                coid = key[len("esc:") :]

                def mark(doc: dict[str, Any] | None) -> dict[str, Any] | None:
                    if doc is None or doc.get("delivered_at") is not None:
                        return None
                    return {**doc, "delivered_at": now}

                await self._cas_loop(f"esc::{coid}", mark)
                await self._map_remove("idx::esc", coid)

        await self._guard(run())


def _next_account_doc(acct: dict[str, Any] | None, order: Order, view: AccountView, now: float) -> dict[str, Any]:
    """The account doc after admitting ``order``: its symbol listed, the order counted in the
    rate window (if it passed), a HALTED state stored (if risk set one); old buckets pruned."""
    new = dict(acct) if acct is not None else {"account": order.account, "symbols": [], "rate": {}}
    symbols = list(new.get("symbols") or [])
    if order.symbol not in symbols:
        symbols.append(order.symbol)
    new["symbols"] = symbols
    sec = int(now)
    rate = {s: n for s, n in (new.get("rate") or {}).items() if int(s) > sec - 120}
    if order.state is OrderState.PENDING:
        rate[str(sec)] = rate.get(str(sec), 0) + 1
    new["rate"] = rate
    if view.halt is not None:
        new["state"] = {"account": order.account, "state": "HALTED", "reason": view.halt, "at": now}
    return new


def _days_ago(day: str, n: int) -> str:
    import datetime as dt

    try:
        return (dt.date.fromisoformat(day) - dt.timedelta(days=n)).isoformat()
    except ValueError:
        return ""


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(0 if attempt < 2 else random.uniform(0, min(0.05, 0.001 * attempt)))


def from_url(parsed: Any, options: dict[str, str], username: str, password: str) -> CouchbaseStore:
    """Build from a parsed ``couchbase://`` URL (see ``open_store``)."""
    options = dict(options)
    bucket = options.pop("bucket", "")
    if not bucket or not parsed.netloc:
        raise ValueError("WOJAK_STORE: write couchbase://HOST[,HOST...]?bucket=NAME[&scope=S&collection=C&prefix=P]")
    scope, collection, prefix = options.pop("scope", None), options.pop("collection", None), options.pop("prefix", "")
    connect_timeout = float(options.pop("connect_timeout", "10"))
    kv_timeout = float(options.pop("kv_timeout", "2.5"))
    rest = "&".join(f"{k}={v}" for k, v in options.items())  # anything else is the SDK's connection string option
    connstr = f"{parsed.scheme}://{parsed.netloc}" + (f"?{rest}" if rest else "")
    return CouchbaseStore(connstr, username, password, bucket, scope=scope, collection=collection, prefix=prefix,
                          connect_timeout=connect_timeout, kv_timeout=kv_timeout)  # fmt: skip
