"""The Couchbase store's order path on the Couchbase mock, two same-run comparisons:

    scripts/services up couchbase && eval "$(scripts/services env)"
    python bench/couchbase_store.py                       # both sections
    python bench/couchbase_store.py --rtt-ms 1            # the KV round trip added to every call

* **accounts**: admit then record 200 orders, all of one account (its orders go one after
  another, as every order of a batch did before 2026-12-01) vs spread over 20 accounts (the
  accounts run concurrently), each KV call delayed by ``--rtt-ms`` to stand for the network
  between the engine and Couchbase (on loopback the client is CPU-bound and the mock answers in
  microseconds, which says nothing about a real cluster).
* **index growth**: admit then record 50 orders with the store's order and trade indexes empty vs
  holding ``--index-keys`` keys (a long-lived orderbook), in both layouts: one document per index
  (``idx::orders``, ``idx::trades``: every admit and fill rewrote it, until 2026-12-01) and
  buckets of ``INDEX_BUCKET`` keys (``idx::orders::<n>``, counters at ``--index-keys``).

Every run uses its own key prefix in the mock's bucket (WOJAK_TEST_COUCHBASE_URL, _USERNAME,
_PASSWORD, _BUCKET, as `scripts/services env` prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import progress  # noqa: E402
from wojak.engine.domain import Order, OrderEvent, OrderState  # noqa: E402
from wojak.engine.protocol import validate_order  # noqa: E402
from wojak.engine.store import Execution, _couchbase  # noqa: E402
from wojak.engine.store._couchbase import CouchbaseStore  # noqa: E402


class _Delayed:
    """A collection whose every call waits ``rtt`` seconds first (a network round trip)."""

    def __init__(self, inner: Any, rtt: float) -> None:
        self._inner, self._rtt = inner, rtt

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name == "binary":
            return lambda: _Delayed(attr(), self._rtt)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(self._rtt)
            return await attr(*args, **kwargs)

        return call


def _store(rtt: float) -> CouchbaseStore:
    store = CouchbaseStore(
        os.environ["WOJAK_TEST_COUCHBASE_URL"], os.environ["WOJAK_TEST_COUCHBASE_USERNAME"],
        os.environ["WOJAK_TEST_COUCHBASE_PASSWORD"], os.environ["WOJAK_TEST_COUCHBASE_BUCKET"],
        prefix=f"bench-{uuid.uuid4().hex[:10]}::",
    )  # fmt: skip
    if rtt:
        real = store._c

        async def delayed() -> Any:
            return _Delayed(await real(), rtt)

        store._c = delayed  # type: ignore[method-assign]
    return store


def _order(coid: str, account: str) -> Order:
    wire, errors = validate_order({"client_order_id": coid, "account": account, "symbol": "NIFTY-FUT", "side": "buy",
                                   "quantity": "1", "order_type": "limit", "limit_price": "24000"})  # fmt: skip
    assert not errors, errors
    return Order.from_wire(wire)


def _approve(order: Order, view: Any) -> None:
    order.apply(OrderEvent.SUBMITTED)


def _filled(order: Order) -> Execution:
    order.apply(OrderEvent.FILLED)
    order.filled_quantity, order.average_price = order.quantity, Decimal(24000)
    return Execution(order, OrderState.PENDING, order.quantity, Decimal(24000), order.quantity)


async def _admit_and_record(store: CouchbaseStore, orders: list[Order]) -> tuple[float, float]:
    start = time.perf_counter()
    admitted = [o for o, existed in await store.admit(orders, _approve) if not existed]
    middle = time.perf_counter()
    await store.record([_filled(o) for o in admitted])
    assert len(admitted) == len(orders)
    return middle - start, time.perf_counter() - middle


async def accounts(rtt: float, orders: int) -> None:
    for label, n_accounts in (("1 account", 1), ("20 accounts", 20)):
        progress(f"accounts: {orders} orders over {label}, {rtt * 1000:.1f} ms per KV call")
        store = _store(rtt)
        try:
            admit, record = await _admit_and_record(store, [_order(f"o{i}", f"acct-{i % n_accounts}") for i in range(orders)])
        finally:
            await store.close()
        print(f"    {label:12s} admit {admit * 1000:8.0f} ms  record {record * 1000:8.0f} ms  "
              f"({orders / (admit + record):6.0f} orders/s)", flush=True)  # fmt: skip


async def index_growth(keys: int) -> None:
    results = {}
    for held in (0, keys):
        progress(f"index growth: 50 orders with {held:,} keys in idx::orders and idx::trades")
        store = _store(0)
        try:
            if held:  # both layouts: one document per index (before 2026-12-01) and full buckets after it
                coll = await store._c()
                orders = [f"acct-{i % 100}/old-{i:09d}" for i in range(held)]
                await coll.upsert(store._k("idx::orders"), {"k": orders})
                await coll.upsert(store._k("idx::trades"), {"k": [f"{k}#1" for k in orders]})
                if hasattr(_couchbase, "INDEX_BUCKET"):
                    size = _couchbase.INDEX_BUCKET
                    for n in range(held // size):
                        part = orders[n * size : (n + 1) * size]
                        await coll.upsert(store._k(f"idx::orders::{n}"), {"k": part})
                        await coll.upsert(store._k(f"idx::trades::{n}"), {"k": [f"{k}#1" for k in part]})
                    for counter in ("idx::seq", "idx::trade-seq"):
                        await coll.upsert(store._k(counter), held)
            results[held] = await _admit_and_record(store, [_order(f"o{i}", "acct-1") for i in range(50)])
        finally:
            await store.close()
        admit, record = results[held]
        print(f"    index documents holding {held:>9,} keys: admit {admit * 1000:8.0f} ms  record {record * 1000:8.0f} ms", flush=True)
    base, grown = sum(results[0]), sum(results[keys])
    print(f"    with {keys:,} keys / with none: {grown / base:.2f}x (the same 50 orders)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("accounts", "index"), action="append")
    parser.add_argument("--rtt-ms", type=float, default=1.0, help="added to every KV call in the accounts section")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--index-keys", type=int, default=100_000)
    args = parser.parse_args()
    only = set(args.only or ("accounts", "index"))
    print("Couchbase store on the mock (same run)")
    if "accounts" in only:
        print(f"  accounts: admit + record {args.orders} orders, {args.rtt_ms} ms added to each KV call")
        await accounts(args.rtt_ms / 1000, args.orders)
    if "index" in only:
        print("  index growth: admit + record 50 orders of one account")
        await index_growth(args.index_keys)


if __name__ == "__main__":
    asyncio.run(main())
