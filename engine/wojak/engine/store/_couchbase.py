"""The Couchbase store: key-value and sub-document operations only (no query service).

The ``couchbase`` SDK (4.x, ``acouchbase``) is imported lazily, here only; install it with
``pip install 'wojak[couchbase]'``. The cluster is connected on the first call, on the
running loop (asyncio or uvloop), with a bounded timeout.

An order's identity is ``Order.key`` = ``<account>/<coid>`` (``client_order_id`` is unique per
account; ``/`` is in neither alphabet). Documents (every key starts with the store's ``prefix``):

- ``order::<account>/<coid>``: the order (``to_wire``, so its ``principal`` too, + fingerprint
  and the execution lease ``lease_owner`` / ``lease_until``), plus ``ver`` (transitions
  recorded), ``fills`` (trades recorded), ``seq`` (admission order) and, while a recorded
  outcome is being applied, ``fx`` (its effect on the tradebook and the position).
- ``pos::<account>::<symbol>``: quantity, average price, realised P&L, and ``res``, one
  entry per order holding a reservation, keyed by the bare coid (the doc is the account's
  already): ``{"c": coid, "q": signed remaining, "v": last applied ``ver``, "t": when}`` plus
  ``"u"``, the order's loss per unit, if it reserved one. ``pending_buy`` / ``pending_sell`` /
  ``pending_loss`` (sum of ``u`` x ``|q|``) are derived from ``res``, so releasing a
  reservation is as idempotent as moving ``q``. A ``venue_anomaly`` order keeps its entry (its
  reservation is held until people decide). Also ``days`` (realised P&L by trading day) and
  ``sod_day`` / ``sod_quantity`` / ``sod_average`` (the position as that day began).
- ``acct::<account>``: the account's symbols, order-rate window and stored trading state.
- ``trade::<account>/<coid>#<n>`` (n = the order's n-th fill, so a replay is a no-op insert;
  the trade_id is ``<account>/<coid>#<n>``).
- ``esc::<entry key>``: the escalation outbox, one insert-only doc per entry key (``admit``'s
  are ``esc:<account>/<coid>``; ``raise_escalation`` names its own, e.g. ``anomaly:...``).
- ``tick::<symbol>``: the symbol's last applied tick with its ``version``; ``ticks::version``
  is a counter (see "Ticks").
- ``audit::<n>``: the audit log, insert-only documents named by the ``audit::seq`` counter
  (the counter is their index: ``list_audit`` reads down from it; an ``n`` whose insert never
  landed, after a crash, is a hole that is skipped).
- Index documents, because there is no query service: ``idx::orders::<n>`` (order keys, in
  buckets of ``INDEX_BUCKET`` by admission number ``seq``: n = seq // INDEX_BUCKET),
  ``idx::trades::<n>`` (trade ids, bucketed by the ``idx::trade-seq`` counter), so a write
  rewrites one bounded document, never one that grows with the orderbook (an earlier version's
  single ``idx::orders`` / ``idx::trades`` is read as the oldest bucket), ``idx::positions``,
  ``idx::accounts``, ``idx::ticks`` (arrays, sub-document ``array_addunique``), ``idx::open``
  (map, by order key, of orders that may hold
  a reservation or an unapplied effect: the recovery scan) and ``idx::esc`` (map, by entry
  key, of undelivered escalations: ``{"k": entry key, "o": order key}``, ``o`` for ``admit``'s,
  which count only once their order is recorded ``escalated``), sub-document ``upsert`` /
  ``remove``; ``idx::seq`` is a counter. Index entries are written *before* the document they
  point to, so a crash leaves at most a dangling entry (skipped when read), never an unlisted
  document.

Listing: ``list_orders`` and ``list_trades`` read the buckets newest first (a page from its
cursor's bucket), the documents of the keys they keep, until the page is full and one bucket more
(a key's bucket number is taken just before the time it is sorted by); ``list_orders`` filters the
account (and its patterns) on the index entries before reading. ``list_positions``,
``pending_orders``, ``open_orders``, ``load_ticks`` and ``undelivered_escalations`` read their whole
index and every document it names: these indexes are bounded by accounts x symbols, open orders,
symbols and undelivered escalations, not by history.

Reconciliation: ``open_orders`` reads ``idx::open`` (an order leaves it once it is closed:
filled, rejected, canceled or ``expired``; a ``venue_anomaly`` stays, holding its reservation,
but is not open at the venue) and pages the open ones in memory. ``take_leases`` is one CAS per
order doc (state and ``filled_quantity`` as the caller read them, the lease free, the
caller's, expired, or past ``pending`` not another loop's); a ``record`` racing it loses its
CAS and retries on the leased doc, keeping the lease.

Crash safety:

- ``admit``: an existing ``pending`` order is re-leased (CAS on its doc) if its lease is free,
  the caller's or expired. A new order: reservation first (position CAS, ``res[coid]``
  overwritten, never added to, so a retry cannot double-reserve; ``decide`` sees the position
  without this coid's own entry; the position doc belongs to the order's account, so the coid
  names one order there), then ``insert`` the order doc (the arbiter: exactly one writer
  creates an order key). A loser removes the reservation only if the winner's record cannot hold one. A
  crash between the two leaves a conservative (too large) reservation, which a resend
  overwrites and the recovery scan drops after ``orphan_after`` seconds. A risk HALT is
  stored with the account doc's CAS and then appended to the audit log (a crash between the
  two loses that audit entry, never the halt).
- ``record``: the order doc is the commit point: one CAS moves its state *and* stores the
  effect (``fx``); then the trade is inserted, the position is updated (skipped if its
  ``res[coid].v`` already shows this effect) and ``fx`` is cleared. Whoever sees an ``fx``
  (the next ``record`` of that order, a resend's ``admit``, or ``pending_orders``: at engine
  start, and once the store answers again after an outage) rolls it forward first, so a crash
  or an outage anywhere loses nothing and applies nothing twice. Two writers
  may roll one effect forward at once (a stale record of the order finds the ``fx``):
  ``res[coid].v`` says "applied" only until a closed order's entry is dropped, so the
  position is written only if, read after the position, the order doc still carries that
  ``fx`` (it is cleared before the entry is dropped).
- ``set_account_state``: the audit entry first, then the account doc, so no change goes
  unaudited (a crash between leaves an entry for a change the caller saw fail).
- Ambiguous writes (timeouts, durability ambiguity) are resolved by reading the document
  back (each write stamps a unique ``_w`` token), never by blindly writing again.

Ticks (``apply_ticks`` / ``ticks_since``): every replica reads the same last tick, and
``ticks_since`` must stay one read when nothing changed. A tick is applied in two CAS steps
on its ``tick::<symbol>`` doc: first the tick is written *provisional* (``"p": true``, no new
version yet; the judge ran on the fresh stored doc, and runs again on every retry), then a
version is taken from the ``ticks::version`` counter and the doc is finalized with it (CAS
on the provisional write). ``ticks_since(v)`` reads the counter ``c``; if ``c <= v`` nothing
changed. Otherwise it reads every tick doc, finalizes any provisional one itself (a crashed
or slow writer's; the CAS lets only one finalization land) and returns those above ``v``,
with ``c`` as the newest version. Why this order: a version ``<= c`` was taken before ``c``
was read, so its tick was already written (provisional) before the docs were read, and is
seen; a tick written later gets a version above ``c``. Taking the version first and writing
after would let a reader skip past a version whose doc lands late. A tick above ``c`` may be
returned twice (again on the next call): harmless, it is the same tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from decimal import Decimal
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from wojak.engine.domain import OPEN_STATES, AccountView, Order, OrderState, Position, Side
from wojak.engine.protocol import ID_PATTERN
from wojak.engine.store._base import (
    TICK_APPLIED,
    Decide,
    Execution,
    JudgeTick,
    StoreUnavailable,
    Trade,
    utc_day,
)
from wojak.engine.store._couchbase_codec import (
    account_matcher,
    account_of,
    coid_of,
    days_ago,
    doc_key,
    new_position_doc,
    next_account_doc,
    order_doc,
    order_from_doc,
    path_key,
    position_from_doc,
    tick_from_doc,
)
from wojak.engine.store._couchbase_kv import CAS_ATTEMPTS, CouchbaseKV, backoff, resolve_ambiguous
from wojak.engine.store._couchbase_sdk import EXTRA_HINT
from wojak.errors import ConfigError

__all__ = ["EXTRA_HINT", "CouchbaseStore", "from_url", "resolve_ambiguous"]

_ZERO = Decimal(0)
# states whose reservation is held: open at the venue, or a venue anomaly (held until people decide)
_HOLDING = OPEN_STATES | {OrderState.VENUE_ANOMALY}


_ID = re.compile(ID_PATTERN)
INDEX_BUCKET = 1000  # keys per index document: each write rewrites (and replicates) one bounded document
_ORDERS, _ORDER_SEQ = "idx::orders", "idx::seq"  # an order's bucket: its admission number (``seq``)
_TRADES, _TRADE_SEQ = "idx::trades", "idx::trade-seq"  # a trade's: a counter taken as it is indexed


def _bucket(name: str, number: int) -> str:
    return f"{name}::{number // INDEX_BUCKET}"


async def _by_account(items: Sequence[Any], account_of: Callable[[Any], str], one: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    """``one`` over ``items``, results in the order given: an account's items one after another
    (``decide`` sees the account's earlier reservations; its doc's CAS serialises it anyway), the
    accounts concurrently, so a batch costs its busiest account's round trips, not every order's.
    A failure cancels the other accounts' work and is raised as it came (the caller answers the
    batch ``retry``; what was written before is found again, as after a crash at that point)."""
    results: list[Any] = [None] * len(items)
    lanes: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        lanes.setdefault(account_of(item), []).append(i)

    async def lane(indexes: list[int]) -> None:
        for i in indexes:
            results[i] = await one(items[i])

    if len(lanes) == 1:  # the common small batch: no tasks
        await lane(next(iter(lanes.values())))
        return results
    tasks = [asyncio.ensure_future(lane(indexes)) for indexes in lanes.values()]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return results


class CouchbaseStore(CouchbaseKV):
    """The Store protocol on Couchbase (see the module docstring for the layout), written in the
    key-value primitives of ``CouchbaseKV``."""

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
        orphan_after: float = 300.0,
    ) -> None:
        super().__init__(
            connstr,
            username,
            password,
            bucket,
            scope=scope,
            collection=collection,
            prefix=prefix,
            connect_timeout=connect_timeout,
            kv_timeout=kv_timeout,
        )
        self.orphan_after = orphan_after

    def __repr__(self) -> str:
        return f"CouchbaseStore({self.connstr!r}, bucket={self.bucket_name!r}, prefix={self.prefix!r})"

    # -- keys -----------------------------------------------------------------------

    @staticmethod
    def _order_key(key: str) -> str:
        """The order doc of ``Order.key`` (``<account>/<coid>``)."""
        return f"order::{key}"

    @staticmethod
    def _pos_key(account: str, symbol: str) -> str:
        return f"pos::{doc_key(account)}::{doc_key(symbol)}"

    @staticmethod
    def _acct_key(account: str) -> str:
        return f"acct::{doc_key(account)}"

    async def _account_view(
        self, order: Order, acct: dict[str, Any] | None, day: str, now: float
    ) -> tuple[AccountView, dict[str, Any] | None, int]:
        """The account as risk sees it: every position it holds (this order's own earlier
        reservation excluded), today's realised P&L, the order-rate window, the stored state.
        Returns the view and the order symbol's position doc with its CAS."""
        account = order.account
        symbols = list(dict.fromkeys([order.symbol, *((acct or {}).get("symbols") or [])]))
        got = await asyncio.gather(*(self._get(self._pos_key(account, s)) for s in symbols))
        view = AccountView(account, {}, day=day, now=now)
        realised = Decimal(0)
        for symbol, (pdoc, _) in zip(symbols, got):
            view.positions[symbol] = position_from_doc(pdoc, account, symbol, exclude=order.client_order_id)
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

    async def set_account_state(self, account: str, state: str | None, reason: str = "", actor: str = "") -> None:
        async def run() -> None:
            # the audit entry first: no change without its entry (see the module docstring)
            await self._append_audit(
                "account_state", actor or "unknown", account, {"state": state or "configured", "reason": reason}
            )
            await self._index_add("idx::accounts", account)

            def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
                new: dict[str, Any] = dict(doc) if doc is not None else {"account": account, "symbols": [], "rate": {}}
                new["state"] = (
                    None if state is None else {"account": account, "state": state, "reason": reason, "at": time.time()}
                )
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

    async def admit(
        self, orders: list[Order], decide: Decide, day: str = "", lease: tuple[str, float] | None = None
    ) -> list[tuple[Order, bool]]:
        return await self._guard(self._admit(orders, decide, day, lease))

    async def _admit(
        self, orders: list[Order], decide: Decide, day: str, lease: tuple[str, float] | None
    ) -> list[tuple[Order, bool]]:
        day = day or utc_day()
        return await _by_account(orders, lambda o: o.account, lambda o: self._admit_one(o, decide, day, lease))

    async def _lease_existing(self, okey: str, doc: dict[str, Any], cas: int, lease: tuple[str, float] | None) -> Order:
        """An existing order as admit returns it: a ``pending`` one whose lease is free, ``lease``'s
        owner's or expired is re-leased to that owner (CAS on the order doc); another owner's
        live lease stays (and wins)."""
        for attempt in range(CAS_ATTEMPTS):
            found = order_from_doc(doc)
            now = time.time()
            if (
                lease is None
                or found.state is not OrderState.PENDING
                or (found.lease_owner not in (None, lease[0]) and found.lease_until > now)
            ):
                return found
            new = {**doc, "lease_owner": lease[0], "lease_until": now + lease[1]}
            if await self._replace(okey, new, cas):
                return order_from_doc(new)
            await backoff(attempt)
            got, cas = await self._get(okey)
            if got is None:  # pragma: no cover - orders are never deleted
                raise StoreUnavailable(f"couchbase: {okey!r} vanished")
            doc = got
        raise StoreUnavailable(f"couchbase: order {okey!r} stayed contended")

    async def _admit_one(self, order: Order, decide: Decide, day: str, lease: tuple[str, float] | None) -> tuple[Order, bool]:
        coid, key = order.client_order_id, order.key
        okey = self._order_key(key)
        existing, existing_cas = await self._get(okey)
        if existing is not None and existing.get("fx"):
            # an outcome recorded whose effects a failure interrupted (the tradebook, the position):
            # a resend finishes them before it is answered from the order
            await self._roll_forward(existing)
            existing, existing_cas = await self._get(okey)
        if existing is not None:
            return await self._lease_existing(okey, existing, existing_cas, lease), True
        pkey = self._pos_key(order.account, order.symbol)
        akey = self._acct_key(order.account)
        snapshot = dataclasses.replace(order)
        seq = await self._next_seq()
        await self._index_add(_bucket(_ORDERS, seq), key)
        await self._map_put("idx::open", key, {"k": key, "c": coid, "p": pkey, "t": time.time()})
        await self._index_add("idx::positions", pkey)
        await self._index_add("idx::accounts", order.account)
        escalation: dict[str, Any] | None = None
        had_stale = False
        halted: str | None = None
        for attempt in range(CAS_ATTEMPTS):
            for f in dataclasses.fields(Order):  # a retry decides afresh, from the order as given
                setattr(order, f.name, getattr(snapshot, f.name))
            # the account doc is the gate: its CAS, taken last, serialises decisions on the account
            acct, acct_cas = await self._get(akey)
            now = time.time()
            view, doc, cas = await self._account_view(order, acct, day, now)
            mine = (doc or {}).get("res", {}).get(path_key(coid))
            if mine is not None and mine.get("v", 0) > 0:
                # an outcome of this coid is already recorded: its order exists (another writer)
                found = await self._get_doc(okey)
                if found is not None:
                    return order_from_doc(found), True
            had_stale = mine is not None
            order.created_at = order.updated_at = now
            view.loss_per_unit = _ZERO
            escalation = decide(order, view)
            halted = view.halt
            if order.state is not OrderState.PENDING and view.halt is None:
                break  # no reservation to take: the order doc decides alone
            if order.state is OrderState.PENDING:
                new = dict(doc) if doc is not None else new_position_doc(order.account, order.symbol)
                new["res"] = dict(new.get("res", {}))
                entry = {"c": coid, "q": str(order.signed_quantity), "v": 0, "t": time.time()}
                if view.loss_per_unit > 0:
                    entry["u"] = str(view.loss_per_unit)
                new["res"][path_key(coid)] = entry
                if not await self._put(pkey, new, cas):
                    await backoff(attempt)
                    continue
            if await self._put(akey, next_account_doc(acct, order, view, now), acct_cas):
                break
            await backoff(attempt)  # another order of the account got in: decide again
        else:
            raise StoreUnavailable(f"couchbase: account {akey!r} stayed contended")
        if halted is not None:  # stored with the account doc above; now its audit entry
            await self._append_audit(
                "account_state", "engine:risk", order.account, {"state": "HALTED", "reason": halted, "order": key}
            )
        if order.state is OrderState.ESCALATED and escalation is not None:
            # the outbox entry first; it counts only once the order doc says escalated
            esc_key = f"esc:{key}"
            await self._map_put("idx::esc", esc_key, {"k": esc_key, "o": key})
            esc = {
                "key": esc_key,
                "client_order_id": coid,
                "payload": json.loads(json.dumps(escalation, default=str)),
                "created_at": time.time(),
                "delivered_at": None,
            }
            await self._upsert_if_absent(f"esc::{esc_key}", esc)
        if lease is not None and order.state is OrderState.PENDING:
            order.lease_owner, order.lease_until = lease[0], time.time() + lease[1]
        record = order_doc(order)
        record.update(ver=0, fills=0, seq=seq)
        if await self._insert(okey, record):
            if order.state is not OrderState.PENDING:
                if had_stale:  # a crashed earlier attempt reserved for this coid: give it back
                    await self._drop_reservation(pkey, coid)
                await self._map_remove("idx::open", key)
            return order, False
        # another writer created this order first: its record stands
        winner_doc = await self._get_doc(okey)
        if winner_doc is None:  # pragma: no cover - orders are never deleted
            raise StoreUnavailable(f"couchbase: {okey!r} vanished")
        winner = order_from_doc(winner_doc)
        if order.state is OrderState.PENDING and winner.state not in _HOLDING and not winner_doc.get("fx"):
            await self._drop_reservation(pkey, coid)
        return winner, True

    async def _upsert_if_absent(self, key: str, doc: dict[str, Any]) -> None:
        await self._insert(key, doc)  # an existing entry (an earlier attempt's) is just as good

    async def _drop_reservation(self, pkey: str, coid: str) -> None:
        def change(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or path_key(coid) not in doc.get("res", {}):
                return None
            new = dict(doc)
            new["res"] = {k: v for k, v in doc["res"].items() if k != path_key(coid)}
            return new

        await self._cas_loop(pkey, change)

    async def record(self, executions: list[Execution]) -> None:
        await self._guard(self._record(executions))

    async def _record(self, executions: list[Execution]) -> None:
        applied = await _by_account(executions, lambda ex: ex.order.account, self._record_one)
        for ex, was_applied in zip(executions, applied):
            ex.applied = was_applied

    async def _record_one(self, ex: Execution) -> bool:
        o = ex.order
        okey = self._order_key(o.key)
        for attempt in range(CAS_ATTEMPTS):
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
            new = order_doc(o)
            for k in ("created_at", "seq", "fingerprint"):
                new[k] = doc[k]
            for k in ("principal", "lease_owner", "lease_until"):  # as admitted / leased, not as the caller saw
                new[k] = doc.get(k)
            ver = doc.get("ver", 0) + 1
            fills = doc.get("fills", 0)
            fx: dict[str, Any] = {
                "v": ver,
                "release": str(ex.release),
                "close": o.state not in _HOLDING,
                "day": ex.day,
                "account": doc["account"],
                "symbol": doc["symbol"],
                "coid": o.client_order_id,
            }
            if ex.fill_quantity > 0 and ex.fill_price is not None:
                fills += 1
                signed = ex.fill_quantity if o.side is Side.BUY else -ex.fill_quantity
                fx["fill"] = {"q": str(signed), "p": str(ex.fill_price), "m": str(ex.multiplier)}
                if ex.pnl_quantum is not None:
                    fx["fill"]["pq"] = str(ex.pnl_quantum)
                fx["trade"] = Trade(
                    f"{o.key}#{fills}",
                    o.client_order_id,
                    doc["account"],
                    doc["symbol"],
                    doc["side"],
                    ex.fill_quantity,
                    ex.fill_price,
                    o.venue_order_id,
                    now,
                ).to_wire()
            new.update(ver=ver, fills=fills, fx=fx)
            if await self._replace(okey, new, cas):  # the commit point
                await self._roll_forward(new)
                return True
            await backoff(attempt)
        raise StoreUnavailable(f"couchbase: order {okey!r} stayed contended")

    async def _roll_forward(self, order_doc: dict[str, Any]) -> None:
        """Apply a committed outcome's effects (idempotent), then clear it from the order."""
        fx = order_doc["fx"]
        coid, ver = fx["coid"], fx["v"]
        pkey = self._pos_key(fx["account"], fx["symbol"])
        trade = fx.get("trade")
        if trade is not None:  # a replay may list it in a second bucket too: listings read each key once
            await self._index_add(_bucket(_TRADES, await self._next_seq(_TRADE_SEQ)), trade["trade_id"])
            await self._insert(f"trade::{trade['trade_id']}", dict(trade))

        def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            new = dict(doc) if doc is not None else new_position_doc(fx["account"], fx["symbol"])
            res = new["res"] = dict(new.get("res", {}))
            entry = res.get(path_key(coid))
            if entry is not None and entry["v"] >= ver:
                return None  # already applied
            position = position_from_doc(new, fx["account"], fx["symbol"])
            fill = fx.get("fill")
            if fill is not None:
                day = fx.get("day") or utc_day()
                position.roll(day)  # its first change of the day snapshots it as the day began
                pnl = position.fill(
                    Decimal(fill["q"]), Decimal(fill["p"]), Decimal(fill["m"]), Decimal(fill["pq"]) if fill.get("pq") else None
                )
                if pnl:
                    days = new["days"] = {d: v for d, v in (new.get("days") or {}).items() if d >= days_ago(day, 7)}
                    days[day] = str(Decimal(days.get(day, "0")) + pnl)
            new.update(
                quantity=str(position.quantity),
                average_price=str(position.average_price),
                realised_pnl=str(position.realised_pnl),
                sod_day=position.sod_day,
                sod_quantity=str(position.sod_quantity),
                sod_average=str(position.sod_average),
            )
            q = Decimal(entry["q"]) if entry is not None else Decimal(0)
            release = Decimal(fx["release"])
            if fx["close"]:
                q = Decimal(0)
            elif release and q:
                q = max(q - release, Decimal(0)) if q > 0 else min(q - release, Decimal(0))
            kept = {"c": coid, "q": str(q), "v": ver, "t": entry["t"] if entry else time.time()}
            if entry is not None and entry.get("u"):
                kept["u"] = entry["u"]
            res[path_key(coid)] = kept
            return new

        key = f"{fx['account']}/{coid}"
        okey = self._order_key(key)
        for attempt in range(CAS_ATTEMPTS):
            doc, cas = await self._get(pkey)
            new = apply(doc)
            if new is None:
                break
            # Another writer may be rolling this outcome forward too (a stale record of the order
            # found ``fx``): once it has applied it, cleared ``fx`` and dropped a closed order's
            # marker, the marker can no longer say "applied". ``fx`` is cleared before the marker
            # is dropped, so an outcome still on its order doc after the position was read is
            # unapplied in that read, and the CAS below keeps it so.
            if ((await self._get_doc(okey) or {}).get("fx") or {}).get("v") != ver:
                break
            if await self._put(pkey, new, cas):
                break
            await backoff(attempt)
        else:
            raise StoreUnavailable(f"couchbase: {pkey!r} stayed contended")

        def clear(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            if doc is None or (doc.get("fx") or {}).get("v") != ver:
                return None
            return {k: v for k, v in doc.items() if k != "fx"}

        await self._cas_loop(okey, clear)
        if fx["close"]:  # the position's marker for this order is no longer needed
            await self._drop_reservation(pkey, coid)
            await self._map_remove("idx::open", key)

    # -- reads ----------------------------------------------------------------------

    async def get_order(self, account: str, client_order_id: str) -> Order | None:
        doc = await self._guard(self._get_doc(self._order_key(f"{account}/{client_order_id}")))
        return None if doc is None else order_from_doc(doc)

    async def _buckets(self, name: str, counter: str, start: int | None = None) -> AsyncIterator[list[str]]:
        """The keys of the bucketed index ``name``, one bucket at a time, newest first: from the
        bucket of ``start`` (a value of ``counter``; default its current value) down to the
        first, then the single document an earlier version kept (read as the oldest bucket)."""
        top = await self._counter(counter) if start is None else start
        for n in range(top // INDEX_BUCKET, -1, -1):
            yield await self._index_list(f"{name}::{n}")
        yield await self._index_list(name)

    async def _all_buckets(self, name: str, counter: str) -> list[list[str]]:
        return [keys async for keys in self._buckets(name, counter)]

    async def _newest_first(
        self,
        name: str,
        counter: str,
        start: int | None,
        wanted: Callable[[str], bool],
        doc_key_of: Callable[[str], str],
        keep: Callable[[dict[str, Any]], bool],
        limit: int,
    ) -> list[dict[str, Any]]:
        """The documents the bucketed index ``name`` names (each key once, ``wanted`` ones, those
        ``keep`` keeps), newest bucket first, until ``limit`` (< 0: all) are found and one bucket
        more is read: a key is bucketed by its counter value, taken just before the time it is
        sorted by, so a neighbour bucket may still hold a newer one. The caller sorts."""
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        full = False
        async for keys in self._buckets(name, counter, start):
            fresh = [k for k in dict.fromkeys(keys) if k not in seen and wanted(k)]
            seen.update(fresh)
            found.extend(d for d in await self._get_many([doc_key_of(k) for k in fresh]) if d is not None and keep(d))
            if full:
                break
            full = 0 <= limit <= len(found)
        return found

    async def list_orders(
        self,
        limit: int = 100,
        account: str | None = None,
        patterns: Sequence[str] | None = None,
        before: tuple[float, str, str] | None = None,
    ) -> list[Order]:
        """Newest first by (created_at, account, client_order_id), strictly before ``before`` if
        given. The account and ``patterns`` are matched on the index entries (order keys name
        their account), so only the orders they keep are read."""

        match = account_matcher(patterns) if patterns is not None else None
        bound = (float(before[0]), str(before[1]), str(before[2])) if before is not None else None

        def wanted(key: str) -> bool:
            return (account is None or account_of(key) == account) and (match is None or match(account_of(key)))

        async def run() -> list[dict[str, Any]]:
            start = None
            # page on from the cursor's own bucket (one newer: its clock's slack); a cursor is the
            # client's: one naming no order an id could name reads from the top (a key past
            # Couchbase's 250 bytes would be refused by the server, not answered)
            if bound is not None and _ID.fullmatch(bound[1]) and _ID.fullmatch(bound[2]):
                cursor = await self._get_doc(self._order_key(f"{bound[1]}/{bound[2]}"))
                if cursor is not None and isinstance(cursor.get("seq"), int):
                    start = cursor["seq"] + INDEX_BUCKET
            return await self._newest_first(
                _ORDERS, _ORDER_SEQ, start, wanted, self._order_key, lambda d: bound is None or position(d) < bound, limit
            )

        def position(d: dict[str, Any]) -> tuple[float, str, str]:
            return d["created_at"], d["account"], d["client_order_id"]

        docs = await self._guard(run())
        docs.sort(key=position, reverse=True)
        return [order_from_doc(d) for d in (docs[:limit] if limit >= 0 else docs)]

    async def list_trades(self, limit: int = 100, client_order_id: str | None = None, account: str | None = None) -> list[Trade]:
        return await self._guard(self._list_trades(limit, client_order_id, account))

    async def _list_trades(self, limit: int, client_order_id: str | None, account: str | None) -> list[Trade]:
        if client_order_id is not None:
            # an order's trades are named by its fill count: no index scan for them
            if account is not None:
                keys = [f"{account}/{client_order_id}"]
            else:  # every order bucket's keys (not its documents): an operator's query, not the order path
                buckets = await self._all_buckets(_ORDERS, _ORDER_SEQ)
                keys = list(dict.fromkeys(k for bucket in buckets for k in bucket if coid_of(k) == client_order_id))
            orders = await self._get_many([self._order_key(k) for k in keys])
            ids = [f"{k}#{i}" for k, o in zip(keys, orders) for i in range(1, (o or {}).get("fills", 0) + 1)]
            docs = [d for d in await self._get_many([f"trade::{i}" for i in ids]) if d is not None]
        else:
            docs = await self._newest_first(
                _TRADES, _TRADE_SEQ, None, lambda i: account is None or account_of(i) == account,
                lambda i: f"trade::{i}", lambda d: True, limit,
            )  # fmt: skip
        docs.sort(key=lambda d: (d["executed_at"], int(d["trade_id"].rsplit("#", 1)[1]), d["trade_id"]), reverse=True)
        return [
            Trade(
                d["trade_id"],
                d["client_order_id"],
                d["account"],
                d["symbol"],
                d["side"],
                Decimal(d["quantity"]),
                Decimal(d["price"]),
                d["venue_order_id"],
                d["executed_at"],
            )
            for d in (docs[:limit] if limit >= 0 else docs)
        ]

    async def get_position(self, account: str, symbol: str) -> Position:
        doc = await self._guard(self._get_doc(self._pos_key(account, symbol)))
        return position_from_doc(doc, account, symbol)

    async def list_positions(self, account: str | None = None) -> list[Position]:
        async def run() -> list[Position]:
            keys = await self._index_list("idx::positions")
            docs = [d for d in await self._get_many(keys) if d is not None]
            return [position_from_doc(d, d["account"], d["symbol"]) for d in docs if account is None or d["account"] == account]

        positions = await self._guard(run())
        return sorted(positions, key=lambda p: (p.account, p.symbol))

    async def pending_orders(self) -> list[Order]:
        """Orders still ``pending``; also the recovery scan (rolls forward unapplied effects,
        drops reservations of orders that are closed or were never created)."""
        return await self._guard(self._pending_orders())

    async def _open_entries(self) -> list[dict[str, Any]]:
        """The ``idx::open`` entries (fails closed on entries of an earlier version's layout)."""
        entries = await self._map_values("idx::open")
        if any("k" not in e for e in entries):
            # written before orders were keyed by (account, client_order_id): fail closed
            raise RuntimeError(
                f"couchbase {self.bucket_name!r} prefix {self.prefix!r}: idx::open holds entries of"
                " orders keyed by client_order_id alone (an earlier version); this version cannot"
                " recover them: resolve them with the earlier version or use a new prefix"
            )
        return entries

    async def _pending_orders(self) -> list[Order]:
        entries = await self._open_entries()
        docs = await self._get_many([self._order_key(e["k"]) for e in entries])
        pending = []
        now = time.time()
        for entry, doc in zip(entries, docs):
            key, coid = entry["k"], entry["c"]
            if doc is None:
                if now - entry["t"] > self.orphan_after:  # an admit that crashed before its insert
                    await self._drop_reservation(entry["p"], coid)
                    await self._map_remove("idx::open", key)
                continue
            if doc.get("fx"):
                await self._roll_forward(doc)
                doc = await self._get_doc(self._order_key(key)) or doc
            state = OrderState(doc["state"])
            if state is OrderState.PENDING:
                pending.append(doc)
            elif state not in _HOLDING and not doc.get("fx"):
                await self._drop_reservation(entry["p"], coid)
                await self._map_remove("idx::open", key)
        pending.sort(key=lambda d: (d["created_at"], d.get("seq", 0)))
        return [order_from_doc(d) for d in pending]

    # -- reconciliation ----------------------------------------------------------------

    async def open_orders(self, limit: int = 500, after: tuple[float, str, str] | None = None) -> list[Order]:
        """Orders the venue may still change (``pending``, ``accepted``, ``partially_filled``), oldest
        first by (created_at, account, client_order_id), strictly after ``after``. Read from
        ``idx::open`` (every order that may hold a reservation is listed there before its doc is
        written) and the docs it names; read-only (the recovery scan, ``pending_orders``, prunes
        the index). Every page reads the whole index: O(open orders) gets per page."""

        async def run() -> list[dict[str, Any]]:
            entries = await self._open_entries()
            docs = await self._get_many([self._order_key(e["k"]) for e in entries])
            return [d for d in docs if d is not None and OrderState(d["state"]) in OPEN_STATES]

        def position(d: dict[str, Any]) -> tuple[float, str, str]:
            return d["created_at"], d["account"], d["client_order_id"]

        docs = await self._guard(run())
        if after is not None:
            bound = (float(after[0]), str(after[1]), str(after[2]))
            docs = [d for d in docs if position(d) > bound]
        docs.sort(key=position)
        return [order_from_doc(d) for d in (docs[:limit] if limit >= 0 else docs)]

    async def take_leases(self, orders: list[Order], owner: str, seconds: float) -> list[Order]:
        """Lease each order to ``owner`` for ``seconds`` (0 hands it back): one CAS per order doc,
        taken only if the doc still has the state and filled quantity given and its lease is
        free, ``owner``'s or expired (past ``pending`` only another live ``...:reconcile`` lease
        holds it; the order path's lease ends with ``pending``). A lost CAS re-reads and checks
        again. Returns the stored records taken, lease set, in the order given."""

        async def take(key: str, given: list[Order]) -> Order | None:
            okey = self._order_key(key)
            for attempt in range(CAS_ATTEMPTS):
                doc, cas = await self._get(okey)
                if doc is None:
                    return None
                stored = order_from_doc(doc)
                if not any(stored.state is o.state and stored.filled_quantity == o.filled_quantity for o in given):
                    return None  # the caller's read is stale: the store moved past it
                now = time.time()
                if (
                    stored.lease_owner not in (None, owner)
                    and stored.lease_until > now
                    and (stored.state is OrderState.PENDING or stored.lease_owner.endswith(":reconcile"))
                ):  # held by another (past pending, only another loop's lease counts)
                    return None
                new = {**doc, "lease_owner": owner, "lease_until": now + seconds}
                if await self._replace(okey, new, cas):
                    stored.lease_owner, stored.lease_until = owner, new["lease_until"]
                    return stored
                await backoff(attempt)  # another writer (a record, another loop): look again
            raise StoreUnavailable(f"couchbase: order {okey!r} stayed contended")

        async def run() -> list[Order]:
            by_key: dict[str, list[Order]] = {}
            for o in orders:  # an order given twice is leased once
                by_key.setdefault(o.key, []).append(o)
            items = list(by_key.items())
            taken: list[Order | None] = []
            for i in range(0, len(items), 64):
                taken.extend(await asyncio.gather(*(take(k, given) for k, given in items[i : i + 64])))
            return [o for o in taken if o is not None]

        return await self._guard(run())

    # -- ticks (see "Ticks" in the module docstring) ---------------------------------

    @staticmethod
    def _tick_key(symbol: str) -> str:
        return f"tick::{doc_key(symbol)}"

    async def apply_ticks(self, ticks: list[dict[str, Any]], judge: JudgeTick) -> list[str]:
        """Judge each tick against its symbol's stored one and store those ``applied``: atomic
        per symbol (a CAS loop on its doc; a retry judges again, on the fresh doc). Symbols
        are applied concurrently, each symbol's ticks in the order given."""
        return await self._guard(self._apply_ticks(ticks, judge))

    async def _apply_ticks(self, ticks: list[dict[str, Any]], judge: JudgeTick) -> list[str]:
        groups: dict[str, list[int]] = {}
        for i, tick in enumerate(ticks):
            groups.setdefault(tick["symbol"], []).append(i)
        done = await asyncio.gather(
            *(self._apply_symbol(symbol, [ticks[i] for i in at], judge) for symbol, at in groups.items()), return_exceptions=True
        )
        outcomes = [""] * len(ticks)
        for at, result in zip(groups.values(), done):
            if isinstance(result, BaseException):
                raise result
            for i, outcome in zip(at, result):
                outcomes[i] = outcome
        return outcomes

    async def _apply_symbol(self, symbol: str, ticks: list[dict[str, Any]], judge: JudgeTick) -> list[str]:
        key = self._tick_key(symbol)
        for attempt in range(CAS_ATTEMPTS):
            doc, cas = await self._get(key)
            stored = None if doc is None else tick_from_doc(doc)
            previous = 0 if doc is None else doc.get("version") or 0
            now = time.time()
            outcomes: list[str] = []
            last: dict[str, Any] | None = None
            for tick in ticks:  # each judged against the one before it in this batch, if applied
                outcome = judge(stored, tick, now)
                outcomes.append(outcome)
                if outcome == TICK_APPLIED:  # the tick as judged (the judge may add fields, e.g. its day)
                    stored = last = tick_from_doc(
                        {
                            **tick,
                            "bid": str(tick["bid"]),
                            "ask": str(tick["ask"]),
                            "last": str(tick["last"]),
                            "received_at": now,
                            "version": previous,
                        }
                    )
            if last is None:
                if doc is not None and doc.get("p") and now - float(doc["received_at"]) > self.kv_timeout:
                    await self._finalize_tick(key)  # a writer died before publishing it: do it for them
                return outcomes
            if doc is None:
                await self._index_add("idx::ticks", symbol)  # the index entry before the doc
            provisional = {**last, "p": True}
            written = await self._put_cas(key, provisional, cas)
            if written is None:
                await backoff(attempt)  # another writer of the symbol got in: judge again
                continue
            await self._finalize_tick(key, provisional, written)
            return outcomes
        raise StoreUnavailable(f"couchbase: tick {key!r} stayed contended")

    async def _finalize_tick(self, key: str, doc: dict[str, Any] | None = None, cas: int = 0) -> dict[str, Any] | None:
        """Give the provisional tick in ``key`` its version (taken *after* it was written); the
        CAS lets one finalization land. Returns the doc as it then is (None if absent)."""
        for attempt in range(CAS_ATTEMPTS):
            if doc is None:
                doc, cas = await self._get(key)
            if doc is None or not doc.get("p"):
                return doc
            final = {k: v for k, v in doc.items() if k not in ("p", "_w")}
            final["version"] = await self._next_seq("ticks::version")
            if await self._replace(key, final, cas):
                return final
            doc = None  # finalized by another, or superseded by a newer tick: look again
            await backoff(attempt)
        raise StoreUnavailable(f"couchbase: tick {key!r} stayed contended")

    async def ticks_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        """One counter read when nothing changed; else every tick doc (provisional ones
        finalized first), those above ``version`` ascending, and the counter as read."""

        async def run() -> tuple[int, list[dict[str, Any]]]:
            newest = await self._counter("ticks::version")
            if newest <= version:
                return version, []
            keys = [self._tick_key(s) for s in await self._index_list("idx::ticks")]
            found = []
            for key, doc in zip(keys, await self._get_many(keys)):
                if doc is not None and doc.get("p"):
                    doc = await self._finalize_tick(key)
                if doc is not None and (doc.get("version") or 0) > version:
                    found.append(tick_from_doc(doc))
            found.sort(key=lambda t: t["version"])
            return newest, found

        return await self._guard(run())

    async def load_ticks(self) -> dict[str, dict[str, Any]]:
        return {t["symbol"]: t for t in (await self.ticks_since(-1))[1]}

    # -- the audit log -------------------------------------------------------------

    async def append_audit(self, kind: str, actor: str, subject: str, detail: dict[str, Any]) -> None:
        await self._guard(self._append_audit(kind, actor, subject, detail))

    async def _append_audit(self, kind: str, actor: str, subject: str, detail: dict[str, Any]) -> None:
        n = await self._next_seq("audit::seq")
        entry = {
            "at": time.time(),
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "detail": json.loads(json.dumps(detail, default=str)),
        }
        await self._insert(f"audit::{n}", entry)  # insert-only: an entry is never replaced

    async def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: read down from the counter, skipping holes (numbers never written)."""

        async def run() -> list[dict[str, Any]]:
            n = await self._counter("audit::seq")
            found: list[dict[str, Any]] = []
            while n > 0 and len(found) < limit:
                numbers = range(n, max(n - (limit - len(found)) - 8, 0), -1)
                found.extend(d for d in await self._get_many([f"audit::{i}" for i in numbers]) if d is not None)
                n = numbers[-1] - 1
            return [{k: d[k] for k in ("at", "kind", "actor", "subject", "detail")} for d in found[:limit]]

        return await self._guard(run())

    # -- the escalation outbox -----------------------------------------------------

    async def undelivered_escalations(self, limit: int = 100) -> list[dict[str, Any]]:
        """The outbox: an entry counts once its order is recorded ``escalated``."""

        async def run() -> list[dict[str, Any]]:
            entries = await self._map_values("idx::esc")
            escs = await self._get_many([f"esc::{e['k']}" for e in entries])
            by_order = [e for e in entries if e.get("o")]  # admit's: they count once the order says so
            order_docs = await self._get_many([self._order_key(e["o"]) for e in by_order])
            orders = dict(zip((e["k"] for e in by_order), order_docs))
            out = []
            for entry, esc in zip(entries, escs):
                key = entry["k"]
                order = orders.get(key)
                if esc is None or (entry.get("o") and order is None):
                    continue  # not committed yet (or never will be: harmless)
                lost = order is not None and order["state"] != OrderState.ESCALATED.value
                if esc.get("delivered_at") is not None or lost:
                    await self._map_remove("idx::esc", key)  # delivered, or written by an attempt that lost
                    continue
                out.append({k: esc[k] for k in ("key", "client_order_id", "payload", "created_at")})
            out.sort(key=lambda e: e["created_at"])
            return out[:limit]

        return await self._guard(run())

    async def raise_escalation(self, key: str, client_order_id: str, payload: dict[str, Any]) -> None:
        """An outbox entry raised outside ``admit`` (e.g. a venue anomaly): it counts at once;
        once per ``key`` (a second raise of the key keeps the first)."""

        async def run() -> None:
            await self._map_put("idx::esc", key, {"k": key})  # the index entry first
            esc = {
                "key": key,
                "client_order_id": client_order_id,
                "created_at": time.time(),
                "delivered_at": None,
                "payload": json.loads(json.dumps(payload, default=str)),
            }
            await self._upsert_if_absent(f"esc::{key}", esc)

        await self._guard(run())

    async def mark_escalations_delivered(self, keys: list[str]) -> None:
        """``keys`` are the entries' ``key`` (``esc:<account>/<coid>`` for admit's escalations)."""

        async def run() -> None:
            now = time.time()
            for key in keys:

                def mark(doc: dict[str, Any] | None) -> dict[str, Any] | None:
                    if doc is None or doc.get("delivered_at") is not None:
                        return None
                    return {**doc, "delivered_at": now}

                await self._cas_loop(f"esc::{key}", mark)
                await self._map_remove("idx::esc", key)

        await self._guard(run())


def from_url(parsed: Any, options: dict[str, str], username: str, password: str) -> CouchbaseStore:
    """Build from a parsed ``couchbase://`` URL (see ``open_store``)."""
    options = dict(options)
    bucket = options.pop("bucket", "")
    if not bucket or not parsed.netloc:
        raise ConfigError("WOJAK_STORE: write couchbase://HOST[,HOST...]?bucket=NAME[&scope=S&collection=C&prefix=P]")
    scope, collection, prefix = options.pop("scope", None), options.pop("collection", None), options.pop("prefix", "")
    try:
        connect_timeout = float(options.pop("connect_timeout", "10"))
        kv_timeout = float(options.pop("kv_timeout", "2.5"))
    except ValueError:
        raise ConfigError("WOJAK_STORE: connect_timeout and kv_timeout are seconds (numbers)") from None
    rest = "&".join(f"{k}={v}" for k, v in options.items())  # anything else is the SDK's connection string option
    connstr = f"{parsed.scheme}://{parsed.netloc}" + (f"?{rest}" if rest else "")
    return CouchbaseStore(
        connstr,
        username,
        password,
        bucket,
        scope=scope,
        collection=collection,
        prefix=prefix,
        connect_timeout=connect_timeout,
        kv_timeout=kv_timeout,
    )
