"""SQLite-specific: a database created by an earlier version is migrated when opened."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from wojak.engine.domain import OrderState
from wojak.engine.store import SQLiteStore

from tests.engine.store.test_store_contract import approve, approve_reserving, fill, order

# the tables as the first release created them (no positions.pending_loss, no orders.loss_per_unit)
_OLD = """
CREATE TABLE orders (
  client_order_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
  account TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
  quantity TEXT NOT NULL, order_type TEXT NOT NULL, limit_price TEXT,
  time_in_force TEXT NOT NULL, tag TEXT,
  state TEXT NOT NULL, filled_quantity TEXT NOT NULL, average_price TEXT,
  venue_order_id TEXT, reason TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE positions (
  account TEXT NOT NULL, symbol TEXT NOT NULL,
  quantity TEXT NOT NULL, average_price TEXT NOT NULL, realised_pnl TEXT NOT NULL,
  pending_buy TEXT NOT NULL, pending_sell TEXT NOT NULL,
  PRIMARY KEY (account, symbol)
);
INSERT INTO positions VALUES ('acct', 'SYM', '5', '100', '0', '0', '0');
"""


async def test_an_earlier_database_gets_the_new_columns_at_open(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD)
    store = SQLiteStore(path)
    try:
        position = await store.get_position("acct", "SYM")
        assert position.quantity == Decimal(5) and position.pending_loss == 0
        [(o, _)] = await store.admit([order("c1", quantity="4")], approve_reserving("3"))
        assert (await store.get_position("acct", "SYM")).pending_loss == Decimal(12)
        await store.record([fill(o, "4")])
        position = await store.get_position("acct", "SYM")
        assert position.quantity == Decimal(9) and position.pending_loss == 0
        assert (await store.get_order("c1")).state is OrderState.FILLED
    finally:
        await store.close()
    again = SQLiteStore(path)  # opening a migrated (or new) database changes nothing
    try:
        await again.admit([order("c2")], approve)
        assert (await again.get_position("acct", "SYM")).pending_buy == Decimal(10)
    finally:
        await again.close()
