"""SQLite-specific: a database created by an earlier version is migrated when opened; the
audit log is append-only in the database itself."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from tests.engine._sql_steps import sqlite_steps
from tests.engine.store.test_store_contract import _Clock, apply_all, approve, approve_reserving, fill, order, tick
from wojak.engine.domain import OrderEvent, OrderState
from wojak.engine.store import Execution, SQLiteStore, StoreUnavailable

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
        assert (await store.get_order("acct", "c1")).state is OrderState.FILLED
    finally:
        await store.close()
    again = SQLiteStore(path)  # opening a migrated (or new) database changes nothing
    try:
        await again.admit([order("c2")], approve)
        assert (await again.get_position("acct", "SYM")).pending_buy == Decimal(10)
    finally:
        await again.close()


# the schema before client_order_id was unique per account (git show 5655ce5:wojak/engine/store/_sqlite.py):
# orders keyed by client_order_id alone, trades named <coid>#<qty>, ticks without a version, no audit table
_BY_COID = """
CREATE TABLE IF NOT EXISTS orders (
  client_order_id TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  account TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
  quantity TEXT NOT NULL, order_type TEXT NOT NULL, limit_price TEXT,
  time_in_force TEXT NOT NULL, tag TEXT,
  state TEXT NOT NULL, filled_quantity TEXT NOT NULL, average_price TEXT,
  venue_order_id TEXT, reason TEXT,
  created_at REAL NOT NULL, updated_at REAL NOT NULL,
  loss_per_unit TEXT
);
CREATE INDEX IF NOT EXISTS orders_by_state ON orders(state) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS orders_by_account ON orders(account, created_at);
CREATE TABLE IF NOT EXISTS trades (
  trade_id TEXT PRIMARY KEY,
  client_order_id TEXT NOT NULL, account TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
  quantity TEXT NOT NULL, price TEXT NOT NULL, venue_order_id TEXT, executed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_by_order ON trades(client_order_id);
CREATE TABLE IF NOT EXISTS positions (
  account TEXT NOT NULL, symbol TEXT NOT NULL,
  quantity TEXT NOT NULL, average_price TEXT NOT NULL, realised_pnl TEXT NOT NULL,
  pending_buy TEXT NOT NULL, pending_sell TEXT NOT NULL, pending_loss TEXT NOT NULL DEFAULT '0',
  PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS ticks (
  symbol TEXT PRIMARY KEY, bid TEXT NOT NULL, ask TEXT NOT NULL, last TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS daily (
  account TEXT NOT NULL, day TEXT NOT NULL, realised TEXT NOT NULL, PRIMARY KEY (account, day)
);
CREATE TABLE IF NOT EXISTS order_rate (
  account TEXT NOT NULL, sec INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (account, sec)
);
CREATE TABLE IF NOT EXISTS account_state (
  account TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
  key TEXT PRIMARY KEY, client_order_id TEXT NOT NULL, payload TEXT NOT NULL,
  created_at REAL NOT NULL, delivered_at REAL
);
INSERT INTO orders VALUES ('c1', 'fp-c1', 'acct', 'SYM', 'buy', '10', 'limit', '100', 'day', NULL,
                           'pending', '0', NULL, NULL, NULL, 1000.0, 1000.0, '2');
INSERT INTO orders VALUES ('c2', 'fp-c2', 'acct', 'SYM', 'buy', '5', 'limit', '100', 'day', 'old',
                           'filled', '5', '99', 'v-2', NULL, 1001.0, 1002.0, NULL);
INSERT INTO orders VALUES ('x1', 'fp-x1', 'other', 'SYM', 'sell', '1', 'limit', '100', 'day', NULL,
                           'escalated', '0', NULL, NULL, 'max_position', 1003.0, 1003.0, NULL);
INSERT INTO trades VALUES ('c2#5', 'c2', 'acct', 'SYM', 'buy', '5', '99', 'v-2', 1002.0);
INSERT INTO positions VALUES ('acct', 'SYM', '5', '99', '0', '10', '0', '20');
INSERT INTO ticks VALUES ('SYM', '99', '101', '100', 1002.5);
INSERT INTO escalations VALUES ('esc:x1', 'x1', '{"why": "max_position"}', 1003.0, NULL);
"""


async def test_a_database_keyed_by_client_order_id_alone_is_migrated_at_open(tmp_path):
    path = tmp_path / "by-coid.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_BY_COID)
    store = SQLiteStore(path)
    try:
        c1, c2, x1 = (await store.get_order("acct", "c1"), await store.get_order("acct", "c2"),
                      await store.get_order("other", "x1"))  # fmt: skip
        assert (c1.state, c1.quantity, c1.created_at, c1.principal) == (OrderState.PENDING, 10, 1000.0, None)
        assert (c2.state, c2.filled_quantity, c2.average_price, c2.tag, c2.venue_order_id) == (
            OrderState.FILLED, 5, 99, "old", "v-2")  # fmt: skip
        assert (x1.state, x1.reason) == (OrderState.ESCALATED, "max_position")
        assert await store.get_order("other", "c1") is None and await store.get_order("acct", "x1") is None
        assert [o.key for o in await store.list_orders()] == ["other/x1", "acct/c2", "acct/c1"]
        assert [o.key for o in await store.pending_orders()] == ["acct/c1"]

        # the key is (account, client_order_id) now: c1 in another account is another order
        results = await store.admit([order("c1", account="acct"), order("c1", account="other", quantity="2")], approve)
        assert [(o.key, existed) for o, existed in results] == [("acct/c1", True), ("other/c1", False)]
        # the migrated pending order records as any other; its loss reservation is released with it
        await store.record([fill(c1, "10", "100")])
        position = await store.get_position("acct", "SYM")
        assert (position.quantity, position.pending_buy, position.pending_loss) == (15, 0, 0)
        assert sorted(t.trade_id for t in await store.list_trades(account="acct")) == ["acct/c1#10", "c2#5"]
        assert [t.quantity for t in await store.list_trades(client_order_id="c2", account="acct")] == [5]

        # ticks without a version: read as version 0, newer ones above it
        newest, ticks = await store.ticks_since(-1)
        assert (newest, [(t["symbol"], t["last"], t["version"]) for t in ticks]) == (0, [("SYM", "100", 0)])
        await store.apply_ticks([tick("SYM", "101", 3)], apply_all)
        newest, ticks = await store.ticks_since(0)
        assert newest > 0 and [(t["last"], t["sequence"]) for t in ticks] == [("101", 3)]

        # an escalation waiting under its old key is still delivered by that key
        assert [e["key"] for e in await store.undelivered_escalations()] == ["esc:x1"]
        await store.mark_escalations_delivered(["esc:x1"])
        assert await store.undelivered_escalations() == []
        await store.append_audit("migrated", "test", "", {})
        assert [e["kind"] for e in await store.list_audit()] == ["migrated"]
    finally:
        await store.close()

    with sqlite3.connect(path) as db:
        keys = [r[1] for r in sorted(db.execute("PRAGMA table_info(orders)"), key=lambda r: r[5]) if r[5]]
        assert keys == ["account", "client_order_id"]
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='orders'")}
        assert {"orders_by_state", "orders_by_account"} <= indexes
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name='orders_by_coid'").fetchone() == (0,)
    again = SQLiteStore(path)  # opening a migrated database changes nothing
    try:
        assert len(await again.list_orders()) == 4
        assert (await again.get_order("other", "c1")).quantity == 2
    finally:
        await again.close()


async def test_the_audit_table_refuses_update_and_delete(tmp_path):
    path = tmp_path / "audit.sqlite"
    store = SQLiteStore(path)
    try:
        await store.append_audit("login", "alice", "sidecar", {"ok": True})
        await store.set_account_state("acct", "HALTED", "ops", actor="bob")
        before = await store.list_audit()
        with sqlite3.connect(path) as db:
            for statement in ("UPDATE audit SET actor='mallory'", "DELETE FROM audit", "DELETE FROM audit WHERE id=1"):
                with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                    db.execute(statement)
        assert await store.list_audit() == before and len(before) == 2
    finally:
        await store.close()


async def test_the_database_is_the_users_alone_new_directories_0700_files_0600(tmp_path):
    import os
    import stat

    path = tmp_path / "new" / "deeper" / "w.sqlite"  # directories that do not exist yet
    store = SQLiteStore(path)
    try:
        await store.admit([order()], approve)
        assert stat.S_IMODE((tmp_path / "new" / "deeper").stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for suffix in ("-wal", "-shm"):
            assert stat.S_IMODE(os.stat(str(path) + suffix).st_mode) == 0o600
    finally:
        await store.close()
    # files of ours left readable by others are tightened when the store opens them
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(str(path) + suffix):
            os.chmod(str(path) + suffix, 0o644)
    SQLiteStore(tmp_path / "new" / "deeper" / "w.sqlite")._db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SQLiteStore(path)  # an existing directory is left as it is, the data is kept
    try:
        assert (await again.get_order("acct", "c1")).state is OrderState.PENDING
    finally:
        await again.close()


@pytest.mark.parametrize("synchronous, level", [("normal", 1), ("full", 2), ("extra", 3), ("FULL", 2), ("Extra", 3)])
async def test_each_synchronous_level_is_the_one_sqlite_runs_with(tmp_path, synchronous, level):
    store = SQLiteStore(tmp_path / "s.sqlite", synchronous=synchronous)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await store.close()
    default = SQLiteStore(tmp_path / "d.sqlite")
    try:
        assert default._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # full unless told otherwise
        assert default.min_free_bytes == 1 << 20
    finally:
        await default.close()


def test_a_store_that_cannot_be_opened_is_a_config_error_naming_the_setting(tmp_path):
    from wojak.errors import ConfigError

    (tmp_path / "dir.sqlite").mkdir()  # a directory where the database should be
    with pytest.raises(ConfigError, match=r"cannot open the SQLite store .*dir\.sqlite.* \(setting WOJAK_STORE\)"):
        SQLiteStore(tmp_path / "dir.sqlite")


async def test_batches_past_sqlites_parameter_limit_are_split(tmp_path):
    """More orders, accounts and symbols in one call than one SQLite statement may name."""
    store = SQLiteStore(tmp_path / "big.sqlite")
    try:
        orders = [order(f"c{i}", account=f"a{i}", symbol=f"S{i % 7}") for i in range(1100)]
        results = await store.admit(orders, approve)
        assert [existed for _, existed in results] == [False] * 1100
        again = await store.admit([order(f"c{i}", account=f"a{i}", symbol=f"S{i % 7}") for i in range(1100)], approve)
        assert all(existed for _, existed in again)
        await store.record([fill(o, "10", "100") for o, _ in results])
        assert all(ex_state is OrderState.FILLED for ex_state in [o.state for o in await store.list_orders(limit=2000)])
        assert {p.pending_buy for p in await store.list_positions()} == {0}
        assert len(await store.list_trades(limit=2000)) == 1100
        # a second round on the same positions: each one read back whole, whichever chunk it falls in
        second = [o for o, _ in await store.admit([order(f"d{i}", account=f"a{i}", symbol=f"S{i % 7}") for i in range(1100)],
                                                  approve_reserving("1"))]  # fmt: skip
        assert {(p.quantity, p.pending_buy, p.pending_loss) for p in await store.list_positions()} == {(10, 10, 10)}
        await store.record([fill(o, "10", "100") for o in second])
        assert {(p.quantity, p.pending_buy, p.pending_loss) for p in await store.list_positions()} == {(20, 0, 0)}
        ticks = [{**tick(f"T{i}", "100"), "sequence": i} for i in range(1100)]
        assert await store.apply_ticks(ticks, apply_all) == ["applied"] * 1100
        assert len(await store.load_ticks()) == 1100
    finally:
        await store.close()


async def test_the_order_rate_windows_and_the_rate_table_keeps_only_two_minutes(tmp_path, monkeypatch):
    from wojak.engine.store import _sqlite

    clock = _Clock(1_000_020.5)  # a multiple of 30 s: the table is pruned when admitting now
    monkeypatch.setattr(_sqlite, "time", clock)
    store = SQLiteStore(tmp_path / "rate.sqlite")
    try:
        store._db.executemany("INSERT INTO order_rate VALUES (?,?,?)",
                              [("acct", 1_000_020 - 121, 5), ("acct", 1_000_020 - 120, 3)])  # fmt: skip
        seen = []

        def look(o, view):
            seen.append((view.orders_last_second, view.orders_last_minute, view.day, view.now))
            return approve(o, view)

        await store.admit([order("a"), order("b"), order("c")], look)
        kept = store._db.execute("SELECT sec, n FROM order_rate WHERE account='acct' ORDER BY sec").fetchall()
        assert kept == [(1_000_020 - 120, 3), (1_000_020, 3)]  # older than 120 s: pruned
        day = "1970-01-12"  # the store's clock's UTC day, not the machine's
        assert seen == [(0, 0, day, 1_000_020.5), (1, 1, day, 1_000_020.5), (2, 2, day, 1_000_020.5)]
        clock.now = 1_000_021.0
        await store.admit([order("d")], approve)  # one more, a second later: two rows in the minute
        seen.clear()
        clock.now = 1_000_021.5
        await store.admit([order("probe")], lambda o, v: seen.append((v.orders_last_second, v.orders_last_minute)) or None)
        assert seen == [(1, 4)]
        for later, expected in ((0.9, (1, 4)), (1.0, (0, 4)), (58.0, (0, 4)), (59.0, (0, 1)), (60.0, (0, 0))):
            clock.now = 1_000_021.0 + later
            seen.clear()
            await store.admit([order(f"probe-{later}")], lambda o, v: seen.append((v.orders_last_second,
                                                                                  v.orders_last_minute)) or None)  # fmt: skip
            assert seen == [expected], later
    finally:
        await store.close()


async def test_past_pending_only_another_loops_live_lease_holds_and_an_outcome_without_a_day_counts_to_the_clock(
    tmp_path, monkeypatch
):
    """The order path's lease instants are the contract's
    (test_a_lease_is_free_from_the_instant_it_ends_on_both_paths); here, past ``pending``."""
    from wojak.engine.store import _sqlite

    clock = _Clock(5_000.0)
    monkeypatch.setattr(_sqlite, "time", clock)
    store = SQLiteStore(tmp_path / "lease.sqlite")
    try:
        [(o, _)] = await store.admit([order("c1")], approve, lease=("e1", 10))
        clock.now = 5_020.0
        [mine] = await store.take_leases([o], "e3:reconcile", 5)  # the order path's lease has ended
        assert mine.lease_owner == "e3:reconcile"
        o.apply(OrderEvent.ACCEPTED)
        await store.record([Execution(o, OrderState.PENDING, Decimal(0), None, Decimal(0))])
        [accepted] = await store.open_orders()
        clock.now = 5_024.999
        assert await store.take_leases([accepted], "e4:reconcile", 5) == []  # another loop's live lease
        clock.now = 5_025.0
        assert [x.lease_owner for x in await store.take_leases([accepted], "e4:reconcile", 5)] == ["e4:reconcile"]
        # an outcome recorded without a trading day counts toward the store clock's UTC day
        [(sell, _)] = await store.admit([order("s1", side="sell", quantity="10")], approve)
        [(buy, _)] = [(accepted, None)]
        await store.record([fill(buy, "10", "100", OrderState.ACCEPTED)])
        await store.record([fill(sell, "10", "104")])
        assert await store.daily_realised("acct", "1970-01-01") == Decimal(40)
        assert (await store.get_position("acct", "SYM")).sod_day == "1970-01-01"
    finally:
        await store.close()


async def test_the_probe_refuses_below_the_free_space_floor_naming_the_setting(tmp_path, monkeypatch):
    import shutil

    store = SQLiteStore(tmp_path / "probe.sqlite", min_free_bytes=10_000)
    real = shutil.disk_usage
    try:
        monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
        await store.probe()  # exactly the floor: still takes writes
        monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=9_999))
        with pytest.raises(StoreUnavailable, match=r"9,999 bytes free, below 10,000 \(WOJAK_STORE \?min_free_bytes=\)"):
            await store.probe()

        def broken(p):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(shutil, "disk_usage", broken)
        with pytest.raises(StoreUnavailable, match="Input/output error"):
            await store.probe()
    finally:
        await store.close()


async def test_a_database_keyed_by_account_but_missing_later_columns_gets_them(tmp_path):
    path = tmp_path / "mid.sqlite"
    store = SQLiteStore(path)
    await store.admit([order("c1")], approve)
    await store.close()
    with sqlite3.connect(path) as db:  # as a release between the re-keying and the start-of-day columns left it
        for column in ("sod_day", "sod_quantity", "sod_average"):
            db.execute(f"ALTER TABLE positions DROP COLUMN {column}")
    again = SQLiteStore(path)
    try:
        assert (await again.get_position("acct", "SYM")).pending_buy == Decimal(10)
        [(b, _)] = await again.admit([order("c2")], approve)
        ex = fill(b, "10")
        ex.day = "2026-11-30"
        await again.record([ex])
        assert (await again.get_position("acct", "SYM")).sod_day == "2026-11-30"
    finally:
        await again.close()


@pytest.mark.parametrize("table, event", [("orders", "INSERT"), ("trades", "INSERT"), ("ticks", "INSERT"),
                                          ("orders", "UPDATE"), ("audit", "INSERT")])  # fmt: skip
async def test_a_database_error_inside_a_write_is_store_unavailable_and_nothing_is_half_written(tmp_path, table, event):
    store = SQLiteStore(tmp_path / "faulty.sqlite")
    try:
        [(o, _)] = await store.admit([order("c0")], approve)
        before = await store.get_position("acct", "SYM")
        store._db.execute(f"CREATE TRIGGER fault BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
        writes = {
            ("orders", "INSERT"): lambda: store.admit([order("c1")], approve),
            ("trades", "INSERT"): lambda: store.record([fill(o, "10")]),
            ("ticks", "INSERT"): lambda: store.apply_ticks([tick("SYM", "100")], apply_all),
            ("orders", "UPDATE"): lambda: store.take_leases([o], "e1:reconcile", 30),
            ("audit", "INSERT"): lambda: store.set_account_state("acct", "HALTED", "ops", actor="ops"),
        }
        with pytest.raises(StoreUnavailable, match="disk I/O error"):
            await writes[(table, event)]()
        store._db.execute("DROP TRIGGER fault")
        # rolled back whole: no order, no reservation, no fill, no tick, no lease, no state
        assert await store.get_order("acct", "c1") is None and await store.get_position("acct", "SYM") == before
        assert (await store.get_order("acct", "c0")).state is OrderState.PENDING and await store.list_trades() == []
        assert await store.load_ticks() == {} and (await store.get_order("acct", "c0")).lease_owner is None
        assert await store.get_account_state("acct") is None and await store.list_audit() == []
        await store.admit([order("c1")], approve)  # and the store goes on
        assert (await store.get_position("acct", "SYM")).pending_buy == Decimal(20)
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database_is_a_config_error_with_the_free_space(tmp_path):
    from wojak.errors import ConfigError

    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a database, just text that fills the header and more" * 100)
    with pytest.raises(ConfigError, match=r"cannot open the SQLite store .*garbage\.sqlite \(setting WOJAK_STORE\): .*;"
                                          r" [\d,]+ bytes free of [\d,]+ on its filesystem"):  # fmt: skip
        SQLiteStore(path)


async def test_the_wal_and_shared_memory_files_are_tightened_too(tmp_path):
    import os
    import stat

    path = tmp_path / "w.sqlite"
    store = SQLiteStore(path)
    await store.admit([order()], approve)
    holder = sqlite3.connect(path)  # another connection keeps the -wal and -shm files in place
    holder.execute("SELECT count(*) FROM orders").fetchone()
    try:
        await store.close()
        for suffix in ("", "-wal", "-shm"):
            os.chmod(str(path) + suffix, 0o644)
        again = SQLiteStore(path)
        try:
            for suffix in ("", "-wal", "-shm"):
                assert stat.S_IMODE(os.stat(str(path) + suffix).st_mode) == 0o600, suffix
        finally:
            await again.close()
    finally:
        holder.close()


async def _batch_steps(tmp_path, stored: int) -> int:
    """SQLite instructions to admit and record a batch of 20 new orders on a store already
    holding ``stored`` orders of the same accounts."""
    store = SQLiteStore(tmp_path / f"steps-{stored}.sqlite", synchronous="normal")
    try:
        for start in range(0, stored, 1000):
            done = [o for o, _ in await store.admit([order(f"old{i}", account=f"a{i % 20}") for i in range(start, min(start + 1000, stored))], approve)]  # fmt: skip
            await store.record([fill(o, "10") for o in done])
        with sqlite_steps(store._db) as steps:
            admitted = [o for o, _ in await store.admit([order(f"new{i}", account=f"a{i}") for i in range(20)], approve)]
            await store.record([fill(o, "10") for o in admitted])
        assert {o.state for o in await store.list_orders(limit=20)} == {OrderState.FILLED}
        return steps[0]
    finally:
        await store.close()


async def test_a_batch_reads_its_orders_by_key_not_by_scanning_the_orderbook(tmp_path):
    """Admitting and recording a batch costs the same whether the orderbook holds 200 orders or
    6,000: each order is found through the (account, client_order_id) key. A row-value
    ``IN (VALUES ...)`` made SQLite read every stored order twice per batch, so throughput fell as
    the book grew."""
    small, large = await _batch_steps(tmp_path, 200), await _batch_steps(tmp_path, 6000)
    assert large < small * 1.5, (small, large)


async def _outbox_poll_steps(tmp_path, delivered: int) -> int:
    """SQLite instructions for one poll of the escalation outbox (3 undelivered) after
    ``delivered`` escalations were raised and delivered."""
    store = SQLiteStore(tmp_path / f"outbox-{delivered}.sqlite", synchronous="normal")
    try:
        for start in range(0, delivered, 500):
            keys = [f"esc:old{i}" for i in range(start, min(start + 500, delivered))]
            for key in keys:
                await store.raise_escalation(key, key[4:], {"reason": "max_order_value"})
            await store.mark_escalations_delivered(keys)
        for i in range(3):
            await store.raise_escalation(f"esc:new{i}", f"new{i}", {"reason": "max_order_value"})
        with sqlite_steps(store._db, every=10) as steps:
            pending = await store.undelivered_escalations()
        assert [e["key"] for e in pending] == ["esc:new0", "esc:new1", "esc:new2"]
        return steps[0]
    finally:
        await store.close()


async def test_polling_the_escalation_outbox_reads_only_the_undelivered(tmp_path):
    """The outbox is polled every half second on the engine's loop: its cost must not grow with
    every escalation ever delivered."""
    small, large = await _outbox_poll_steps(tmp_path, 10), await _outbox_poll_steps(tmp_path, 3000)
    assert large < small * 1.5, (small, large)
