"""The embedded store: one SQLite file in WAL mode, one transaction per batch (group commit).

Calls run inline on the engine's loop: with WAL a commit is a short append, and while
an fsync blocks, requests queue in the socket and the next batch is simply larger.
Several engine processes may share the file: ``BEGIN IMMEDIATE`` serialises writers,
and risk is decided inside the transaction, so limits hold across them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from wojak.engine._sqlite_keys import rows_by_pairs
from wojak.engine.domain import AccountView, Order, OrderState, Position, Side
from wojak.engine.store._base import (
    TICK_APPLIED,
    Decide,
    Execution,
    JudgeTick,
    StoreUnavailable,
    Trade,
    utc_day,
)
from wojak.errors import ConfigError

_ZERO = Decimal(0)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
  client_order_id TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  account TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
  quantity TEXT NOT NULL, order_type TEXT NOT NULL, limit_price TEXT,
  time_in_force TEXT NOT NULL, tag TEXT,
  state TEXT NOT NULL, filled_quantity TEXT NOT NULL, average_price TEXT,
  venue_order_id TEXT, reason TEXT,
  created_at REAL NOT NULL, updated_at REAL NOT NULL,
  loss_per_unit TEXT, principal TEXT, lease_owner TEXT, lease_until REAL,
  PRIMARY KEY (account, client_order_id)
);
CREATE INDEX IF NOT EXISTS orders_by_state ON orders(state) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS orders_by_account ON orders(account, created_at);
CREATE INDEX IF NOT EXISTS orders_by_time ON orders(created_at, account, client_order_id);
CREATE TABLE IF NOT EXISTS trades (
  trade_id TEXT PRIMARY KEY,
  client_order_id TEXT NOT NULL, account TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
  quantity TEXT NOT NULL, price TEXT NOT NULL, venue_order_id TEXT, executed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_by_account_order ON trades(account, client_order_id);
CREATE TABLE IF NOT EXISTS positions (
  account TEXT NOT NULL, symbol TEXT NOT NULL,
  quantity TEXT NOT NULL, average_price TEXT NOT NULL, realised_pnl TEXT NOT NULL,
  pending_buy TEXT NOT NULL, pending_sell TEXT NOT NULL, pending_loss TEXT NOT NULL DEFAULT '0',
  sod_day TEXT NOT NULL DEFAULT '', sod_quantity TEXT NOT NULL DEFAULT '0', sod_average TEXT NOT NULL DEFAULT '0',
  PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS ticks (
  symbol TEXT PRIMARY KEY, bid TEXT NOT NULL, ask TEXT NOT NULL, last TEXT NOT NULL, received_at REAL NOT NULL,
  sequence INTEGER, exchange_time TEXT, version INTEGER NOT NULL DEFAULT 0, day TEXT, sod_price TEXT
);
CREATE TABLE IF NOT EXISTS heartbeat (id INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,
  subject TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
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
-- the outbox is polled every half second: it reads the undelivered, not every escalation ever raised
CREATE INDEX IF NOT EXISTS escalations_undelivered ON escalations(created_at) WHERE delivered_at IS NULL;
"""

_ORDER_COLUMNS = (
    "client_order_id, fingerprint, account, symbol, side, quantity, order_type, limit_price, time_in_force,"
    " tag, state, filled_quantity, average_price, venue_order_id, reason, created_at, updated_at"
)
_INSERT_ORDER = (
    f"INSERT INTO orders ({_ORDER_COLUMNS}, loss_per_unit, principal, lease_owner, lease_until) VALUES ({','.join('?' * 21)})"
)
# columns added after the first release: databases created before get them at open
_MIGRATIONS = (
    ("orders", "loss_per_unit", "ALTER TABLE orders ADD COLUMN loss_per_unit TEXT"),
    ("orders", "principal", "ALTER TABLE orders ADD COLUMN principal TEXT"),
    ("orders", "lease_owner", "ALTER TABLE orders ADD COLUMN lease_owner TEXT"),
    ("orders", "lease_until", "ALTER TABLE orders ADD COLUMN lease_until REAL"),
    ("positions", "pending_loss", "ALTER TABLE positions ADD COLUMN pending_loss TEXT NOT NULL DEFAULT '0'"),
    ("ticks", "sequence", "ALTER TABLE ticks ADD COLUMN sequence INTEGER"),
    ("ticks", "exchange_time", "ALTER TABLE ticks ADD COLUMN exchange_time TEXT"),
    ("ticks", "version", "ALTER TABLE ticks ADD COLUMN version INTEGER NOT NULL DEFAULT 0"),
    ("ticks", "day", "ALTER TABLE ticks ADD COLUMN day TEXT"),
    ("ticks", "sod_price", "ALTER TABLE ticks ADD COLUMN sod_price TEXT"),
    ("positions", "sod_day", "ALTER TABLE positions ADD COLUMN sod_day TEXT NOT NULL DEFAULT ''"),
    ("positions", "sod_quantity", "ALTER TABLE positions ADD COLUMN sod_quantity TEXT NOT NULL DEFAULT '0'"),
    ("positions", "sod_average", "ALTER TABLE positions ADD COLUMN sod_average TEXT NOT NULL DEFAULT '0'"),
)
# Before client_order_id was unique per account, it was the orders table's whole key.
_REKEY_ORDERS = (
    "ALTER TABLE orders RENAME TO orders_by_coid",
    _SCHEMA[
        _SCHEMA.index("CREATE TABLE IF NOT EXISTS orders") : _SCHEMA.index(
            ");", _SCHEMA.index("CREATE TABLE IF NOT EXISTS orders")
        )
        + 2
    ],
    f"INSERT INTO orders ({_ORDER_COLUMNS}, loss_per_unit, principal, lease_owner, lease_until)"
    f" SELECT {_ORDER_COLUMNS}, loss_per_unit, principal, lease_owner, lease_until FROM orders_by_coid",
    "DROP TABLE orders_by_coid",
    "CREATE INDEX IF NOT EXISTS orders_by_state ON orders(state) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS orders_by_account ON orders(account, created_at)",
)
_ORDER_SELECT_COLUMNS = f"{_ORDER_COLUMNS}, principal, lease_owner, lease_until"
_SELECT_ORDER = f"SELECT {_ORDER_SELECT_COLUMNS} FROM orders"
_UPSERT_STATE = (
    "INSERT INTO account_state VALUES (?,?,?,?) ON CONFLICT(account) DO UPDATE SET"
    " state=excluded.state, reason=excluded.reason, at=excluded.at"
)
_UPSERT_POSITION = (
    "INSERT INTO positions VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(account, symbol) DO UPDATE SET"
    " quantity=excluded.quantity, average_price=excluded.average_price, realised_pnl=excluded.realised_pnl,"
    " pending_buy=excluded.pending_buy, pending_sell=excluded.pending_sell, pending_loss=excluded.pending_loss,"
    " sod_day=excluded.sod_day, sod_quantity=excluded.sod_quantity, sod_average=excluded.sod_average"
)


_INSERT_AUDIT = "INSERT INTO audit (at, kind, actor, subject, detail) VALUES (?,?,?,?,?)"
_SELECT_TICK = "SELECT symbol, bid, ask, last, received_at, sequence, exchange_time, version, day, sod_price FROM ticks"
_UPSERT_TICK = (
    "INSERT INTO ticks (symbol, bid, ask, last, received_at, sequence, exchange_time, version, day, sod_price)"
    " VALUES (?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(symbol) DO UPDATE SET bid=excluded.bid, ask=excluded.ask, last=excluded.last,"
    " received_at=excluded.received_at, sequence=excluded.sequence, exchange_time=excluded.exchange_time,"
    " version=excluded.version, day=excluded.day, sod_price=excluded.sod_price"
)


def _tick_row(t: dict[str, Any]) -> tuple[Any, ...]:
    return (
        t["symbol"],
        t["bid"],
        t["ask"],
        t["last"],
        t["received_at"],
        t.get("sequence"),
        t.get("exchange_time"),
        t["version"],
        t.get("day"),
        t.get("sod_price"),
    )


def _tick_from_row(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "symbol": r[0],
        "bid": r[1],
        "ask": r[2],
        "last": r[3],
        "received_at": r[4],
        "sequence": r[5],
        "exchange_time": r[6],
        "version": r[7],
        "day": r[8],
        "sod_price": r[9],
    }


def _order_filter(
    account: str | None, patterns: Sequence[str] | None, before: tuple[float, str, str] | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if account is not None:
        clauses.append("account=?")
        args.append(account)
    if patterns is not None:
        if not patterns:
            clauses.append("0")
        else:
            clauses.append("(" + " OR ".join("account GLOB ?" for _ in patterns) + ")")
            args.extend(patterns)
    if before is not None:
        clauses.append("(created_at, account, client_order_id) < (?, ?, ?)")
        args.extend(before)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _order_row(o: Order) -> tuple[Any, ...]:
    return (
        o.client_order_id,
        o.fingerprint,
        o.account,
        o.symbol,
        o.side.value,
        str(o.quantity),
        o.order_type,
        _s(o.limit_price),
        o.time_in_force,
        o.tag,
        o.state.value,
        str(o.filled_quantity),
        _s(o.average_price),
        o.venue_order_id,
        o.reason,
        o.created_at,
        o.updated_at,
    )


def _order_from_row(r: tuple[Any, ...]) -> Order:
    return Order(
        client_order_id=r[0],
        fingerprint=r[1],
        account=r[2],
        symbol=r[3],
        side=Side(r[4]),
        quantity=Decimal(r[5]),
        order_type=r[6],
        limit_price=None if r[7] is None else Decimal(r[7]),
        time_in_force=r[8],
        tag=r[9],
        state=OrderState(r[10]),
        filled_quantity=Decimal(r[11]),
        average_price=None if r[12] is None else Decimal(r[12]),
        venue_order_id=r[13],
        reason=r[14],
        created_at=r[15],
        updated_at=r[16],
        principal=r[17],
        lease_owner=r[18],
        lease_until=r[19] or 0.0,
    )


def _position_row(p: Position) -> tuple[Any, ...]:
    return (
        p.account,
        p.symbol,
        str(p.quantity),
        str(p.average_price),
        str(p.realised_pnl),
        str(p.pending_buy),
        str(p.pending_sell),
        str(p.pending_loss),
        p.sod_day,
        str(p.sod_quantity),
        str(p.sod_average),
    )


def _position_from_row(r: tuple[Any, ...]) -> Position:
    return Position(
        r[0],
        r[1],
        Decimal(r[2]),
        Decimal(r[3]),
        Decimal(r[4]),
        Decimal(r[5]),
        Decimal(r[6]),
        Decimal(r[7]),
        sod_day=r[8],
        sod_quantity=Decimal(r[9]),
        sod_average=Decimal(r[10]),
    )


class SQLiteStore:
    def __init__(self, path: str | Path, synchronous: str = "full", min_free_bytes: int = 1 << 20) -> None:
        self.min_free_bytes = min_free_bytes
        if synchronous.lower() not in ("normal", "full", "extra"):
            raise ConfigError("sqlite synchronous must be normal, full or extra (WOJAK_STORE ?synchronous=)")
        self.path = str(path)
        # The orderbook, tradebook and positions are this user's only: a new directory is 0700,
        # the database 0600 (SQLite gives its -wal and -shm files the database's mode), and
        # files of ours left readable by others are tightened.
        if not Path(self.path).parent.exists():
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            try:
                fd = os.open(self.path + suffix, os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if not suffix else 0), 0o600)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(f"cannot open the SQLite store {self.path + suffix} (setting WOJAK_STORE): {exc}") from None
            try:
                info = os.fstat(fd)
                if info.st_uid == os.getuid() and info.st_mode & 0o077:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            # the WAL is truncated back to this after each checkpoint, so it stays bounded
            self._db.execute("PRAGMA journal_size_limit=67108864")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except (sqlite3.Error, StoreUnavailable) as exc:
            raise ConfigError(
                f"cannot open the SQLite store {self.path} (setting WOJAK_STORE): {exc}; {_free_space(self.path)}"
            ) from None

    def _migrate(self) -> None:
        """Bring a database created by an earlier version up to date: add the columns it lacks
        and re-key its orders by (account, client_order_id). Checked again inside a write
        transaction, so replicas opening the same old file at once do it once."""
        if self._missing_columns() or self._orders_keyed_by_coid():
            db = self._tx()
            try:
                for table, column, alter in _MIGRATIONS:
                    if (table, column) in self._missing_columns():
                        db.execute(alter)
                if self._orders_keyed_by_coid():
                    for statement in _REKEY_ORDERS:
                        db.execute(statement)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._commit()
        self._db.execute("CREATE INDEX IF NOT EXISTS ticks_by_version ON ticks(version)")
        self._db.execute("CREATE INDEX IF NOT EXISTS orders_by_time ON orders(created_at, account, client_order_id)")

    def _orders_keyed_by_coid(self) -> bool:
        keys = [r[1] for r in sorted(self._db.execute("PRAGMA table_info(orders)"), key=lambda r: r[5]) if r[5]]
        return keys == ["client_order_id"]

    def _missing_columns(self) -> set[tuple[str, str]]:
        missing = set()
        for table, column, _ in _MIGRATIONS:
            if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                missing.add((table, column))
        return missing

    # -- the order path -------------------------------------------------------------

    def _tx(self) -> sqlite3.Connection:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        return self._db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block ends, rolled back if it raises."""
        db = self._tx()
        try:
            yield db
        except BaseException as exc:
            self._rollback(exc)
            raise
        self._commit()

    def _rollback(self, exc: BaseException) -> None:
        """Roll back after ``exc``; a database error (a full disk, an I/O error) becomes
        ``StoreUnavailable`` (answered ``retry``, readiness false), not a traceback per batch."""
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. on SQLITE_FULL)
        if isinstance(exc, sqlite3.Error):
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    async def probe(self) -> None:
        """A heartbeat write (readiness: the store accepts writes), and a WAL checkpoint so the
        log stays bounded when the engine is idle."""
        import shutil

        # a small heartbeat still fits in a WAL that has room while orders no longer do: a full
        # disk is also judged by the free space left
        try:
            free = shutil.disk_usage(Path(self.path).parent).free
        except OSError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        if free < self.min_free_bytes:
            raise StoreUnavailable(
                f"sqlite {self.path}: database or disk is full: {free:,} bytes free, below"
                f" {self.min_free_bytes:,} (WOJAK_STORE ?min_free_bytes=)"
            )
        with self._write() as db:
            db.execute("INSERT INTO heartbeat VALUES (0, ?) ON CONFLICT(id) DO UPDATE SET at=excluded.at", (time.time(),))
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: checkpoint: {exc}") from exc

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback(exc)

    async def admit(
        self, orders: list[Order], decide: Decide, day: str = "", lease: tuple[str, float] | None = None
    ) -> list[tuple[Order, bool]]:
        db = self._tx()
        try:
            now = time.time()
            day = day or utc_day(now)
            existing = self._orders_by_key({(o.account, o.client_order_id) for o in orders})
            views = self._views({o.account for o in orders if o.key not in existing}, day, now)
            dirty: dict[tuple[str, str], Position] = {}
            rate: dict[str, int] = {}
            halts: list[tuple[str, str, str, float]] = []
            audits: list[tuple[Any, ...]] = []
            new_rows, outbox, results = [], [], []
            leased: list[tuple[Any, ...]] = []
            for order in orders:
                found = existing.get(order.key)
                if found is not None:
                    if (
                        lease is not None
                        and found.state is OrderState.PENDING
                        and (found.lease_owner in (None, lease[0]) or found.lease_until <= now)
                    ):  # free, ours or expired: take it (another engine's live lease stays, and wins)
                        found.lease_owner, found.lease_until = lease[0], now + lease[1]
                        leased.append((lease[0], found.lease_until, found.account, found.client_order_id))
                    results.append((found, True))
                    continue
                view = views[order.account]
                view.position(order.symbol)
                order.created_at = order.updated_at = now
                view.loss_per_unit = _ZERO
                escalation = decide(order, view)
                if view.halt is not None:
                    halts.append((order.account, "HALTED", view.halt, now))
                    audits.append(
                        (
                            now,
                            "account_state",
                            "engine:risk",
                            order.account,
                            json.dumps({"state": "HALTED", "reason": view.halt, "order": order.key}),
                        )
                    )
                    view.state, view.halt = "HALTED", None
                per_unit = None
                if order.state is OrderState.PENDING:
                    position = view.position(order.symbol)
                    if view.loss_per_unit > 0:
                        per_unit = str(view.loss_per_unit)
                        position.reserve(order.signed_quantity, view.loss_per_unit * order.quantity)
                    else:
                        position.reserve(order.signed_quantity)
                    dirty[(order.account, order.symbol)] = position
                    view.orders_last_second += 1
                    view.orders_last_minute += 1
                    rate[order.account] = rate.get(order.account, 0) + 1
                elif escalation is not None:
                    outbox.append((f"esc:{order.key}", order.client_order_id, json.dumps(escalation, default=str), now))
                if lease is not None and order.state is OrderState.PENDING:
                    order.lease_owner, order.lease_until = lease[0], now + lease[1]
                new_rows.append(
                    (
                        *_order_row(order),
                        per_unit,
                        order.principal,
                        order.lease_owner,
                        order.lease_until if order.lease_owner else None,
                    )
                )
                existing[order.key] = order
                results.append((order, False))
            db.executemany(_INSERT_ORDER, new_rows)
            if leased:
                db.executemany("UPDATE orders SET lease_owner=?, lease_until=? WHERE account=? AND client_order_id=?", leased)
            if dirty:
                db.executemany(_UPSERT_POSITION, [_position_row(p) for p in dirty.values()])
            if rate:
                sec = int(now)
                db.executemany(
                    "INSERT INTO order_rate VALUES (?,?,?) ON CONFLICT(account, sec) DO UPDATE SET n = n + excluded.n",
                    [(a, sec, n) for a, n in rate.items()],
                )
                if sec % 30 == 0:
                    db.execute("DELETE FROM order_rate WHERE sec < ?", (sec - 120,))
            if halts:
                db.executemany(_UPSERT_STATE, halts)
                db.executemany(_INSERT_AUDIT, audits)
            if outbox:
                db.executemany("INSERT OR IGNORE INTO escalations VALUES (?,?,?,?,NULL)", outbox)
        except BaseException as exc:
            self._rollback(exc)
            raise
        self._commit()
        return results

    def _orders_by_key(self, keys: set[tuple[str, str]]) -> dict[str, Order]:
        """Stored orders for (account, client_order_id) pairs, by ``Order.key``."""
        found: dict[str, Order] = {}
        for r in rows_by_pairs(self._db, _ORDER_SELECT_COLUMNS, "orders", ("account", "client_order_id"), keys):
            order = _order_from_row(r)
            found[order.key] = order
        return found

    def _views(self, accounts: set[str], day: str, now: float) -> dict[str, AccountView]:
        """Every account's positions, today's realised P&L, order-rate window and state: one query each."""
        views = {a: AccountView(a, {}, day=day, now=now) for a in accounts}
        names = list(accounts)
        sec = int(now)
        for chunk in _chunks(names, 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db.execute(f"SELECT * FROM positions WHERE account IN ({marks})", chunk):
                views[r[0]].positions[r[1]] = _position_from_row(r)
            for a, realised in self._db.execute(
                f"SELECT account, realised FROM daily WHERE day=? AND account IN ({marks})", (day, *chunk)
            ):
                views[a].realised_today = Decimal(realised)
            for a, s, n in self._db.execute(
                f"SELECT account, sec, n FROM order_rate WHERE sec > ? AND account IN ({marks})", (sec - 60, *chunk)
            ):
                v = views[a]
                v.orders_last_minute += n
                if s == sec:
                    v.orders_last_second += n
            for a, state in self._db.execute(f"SELECT account, state FROM account_state WHERE account IN ({marks})", chunk):
                views[a].state = state
        return views

    async def record(self, executions: list[Execution]) -> None:
        db = self._tx()
        try:
            states: dict[str, str] = {}
            loss_per_unit: dict[str, Decimal] = {}
            for account, coid, state, per_unit in rows_by_pairs(
                db,
                "t.account, t.client_order_id, t.state, t.loss_per_unit",
                "orders",
                ("account", "client_order_id"),
                {(ex.order.account, ex.order.client_order_id) for ex in executions},
            ):
                states[f"{account}/{coid}"] = state
                if per_unit is not None:
                    loss_per_unit[f"{account}/{coid}"] = Decimal(per_unit)
            positions = self._positions({(ex.order.account, ex.order.symbol) for ex in executions})
            updates, trades = [], []
            realised: dict[tuple[str, str], Decimal] = {}
            now = time.time()
            for ex in executions:
                o = ex.order
                # compare-and-set inside the write transaction: apply only to the state the caller saw
                ex.applied = states.get(o.key) == ex.expected_state.value
                if not ex.applied:
                    continue
                states[o.key] = o.state.value
                o.updated_at = now
                updates.append(
                    (
                        o.state.value,
                        str(o.filled_quantity),
                        _s(o.average_price),
                        o.venue_order_id,
                        o.reason,
                        now,
                        o.account,
                        o.client_order_id,
                    )
                )
                position = positions[(o.account, o.symbol)]
                if ex.fill_quantity > 0 and ex.fill_price is not None:
                    position.roll(ex.day or utc_day(now))
                    signed = ex.fill_quantity if o.side is Side.BUY else -ex.fill_quantity
                    pnl = position.fill(signed, ex.fill_price, ex.multiplier, ex.pnl_quantum)
                    if pnl:
                        k = (o.account, ex.day or utc_day(now))
                        realised[k] = realised.get(k, Decimal(0)) + pnl
                    # one trade per fill, named by the cumulative quantity it brought the order to
                    trades.append(
                        (
                            f"{o.key}#{o.filled_quantity}",
                            o.client_order_id,
                            o.account,
                            o.symbol,
                            o.side.value,
                            str(ex.fill_quantity),
                            str(ex.fill_price),
                            o.venue_order_id,
                            now,
                        )
                    )
                if ex.release:
                    per_unit = loss_per_unit.get(o.key)
                    if per_unit:  # the order's loss reservation, pro rata to the quantity released
                        position.release(ex.release, per_unit * abs(ex.release))
                    else:
                        position.release(ex.release)
            db.executemany(
                "UPDATE orders SET state=?, filled_quantity=?, average_price=?, venue_order_id=?, reason=?, updated_at=?"
                " WHERE account=? AND client_order_id=?",
                updates,
            )
            if trades:
                db.executemany("INSERT INTO trades VALUES (?,?,?,?,?,?,?,?,?)", trades)
            db.executemany(_UPSERT_POSITION, [_position_row(p) for p in positions.values()])
            for (account, day), pnl in realised.items():
                row = db.execute("SELECT realised FROM daily WHERE account=? AND day=?", (account, day)).fetchone()
                total = (Decimal(row[0]) if row else Decimal(0)) + pnl
                db.execute(
                    "INSERT INTO daily VALUES (?,?,?) ON CONFLICT(account, day) DO UPDATE SET realised=excluded.realised",
                    (account, day, str(total)),
                )
        except BaseException as exc:
            self._rollback(exc)
            raise
        self._commit()

    def _positions(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Position]:
        """Positions for (account, symbol) keys in one query; absent ones start flat."""
        found: dict[tuple[str, str], Position] = {}
        for r in rows_by_pairs(self._db, "t.*", "positions", ("account", "symbol"), keys):
            found[(r[0], r[1])] = _position_from_row(r)
        return {k: found.get(k) or Position(*k) for k in keys}

    def _position(self, account: str, symbol: str) -> Position:
        row = self._db.execute("SELECT * FROM positions WHERE account=? AND symbol=?", (account, symbol)).fetchone()
        return _position_from_row(row) if row else Position(account, symbol)

    # -- reads ----------------------------------------------------------------------

    async def get_order(self, account: str, client_order_id: str) -> Order | None:
        row = self._db.execute(f"{_SELECT_ORDER} WHERE account=? AND client_order_id=?", (account, client_order_id)).fetchone()
        return _order_from_row(row) if row else None

    async def list_orders(
        self,
        limit: int = 100,
        account: str | None = None,
        patterns: Sequence[str] | None = None,
        before: tuple[float, str, str] | None = None,
    ) -> list[Order]:
        """Newest first: by (created_at, account, client_order_id) descending, strictly before
        ``before`` if given; only ``account``, and only accounts matching one of ``patterns``
        (fnmatch ``*``/``?``, the same in GLOB) if given."""
        where, args = _order_filter(account, patterns, before)
        rows = self._db.execute(
            f"{_SELECT_ORDER} {where} ORDER BY created_at DESC, account DESC, client_order_id DESC LIMIT ?", (*args, limit)
        )
        return [_order_from_row(r) for r in rows]

    async def list_trades(self, limit: int = 100, client_order_id: str | None = None, account: str | None = None) -> list[Trade]:
        clauses, args = [], []
        if account is not None:
            clauses.append("account=?")
            args.append(account)
        if client_order_id is not None:
            clauses.append("client_order_id=?")
            args.append(client_order_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM trades {where} ORDER BY executed_at DESC, rowid DESC LIMIT ?", (*args, limit))
        return [Trade(r[0], r[1], r[2], r[3], r[4], Decimal(r[5]), Decimal(r[6]), r[7], r[8]) for r in rows]

    async def get_position(self, account: str, symbol: str) -> Position:
        return self._position(account, symbol)

    async def list_positions(self, account: str | None = None) -> list[Position]:
        where, args = ("WHERE account=?", (account,)) if account else ("", ())
        return [_position_from_row(r) for r in self._db.execute(f"SELECT * FROM positions {where}", args)]

    async def get_account_state(self, account: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT account, state, reason, at FROM account_state WHERE account=?", (account,)).fetchone()
        return None if row is None else {"account": row[0], "state": row[1], "reason": row[2], "at": row[3]}

    async def set_account_state(self, account: str, state: str | None, reason: str = "", actor: str = "") -> None:
        with self._write() as db:
            now = time.time()
            if state is None:
                db.execute("DELETE FROM account_state WHERE account=?", (account,))
            else:
                db.execute(_UPSERT_STATE, (account, state, reason, now))
            # the override row is the current state; the audit log keeps every change
            db.execute(
                _INSERT_AUDIT,
                (
                    now,
                    "account_state",
                    actor or "unknown",
                    account,
                    json.dumps({"state": state or "configured", "reason": reason}),
                ),
            )

    async def list_account_states(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT account, state, reason, at FROM account_state ORDER BY account")
        return [{"account": r[0], "state": r[1], "reason": r[2], "at": r[3]} for r in rows]

    async def daily_realised(self, account: str, day: str) -> Decimal:
        row = self._db.execute("SELECT realised FROM daily WHERE account=? AND day=?", (account, day)).fetchone()
        return Decimal(row[0]) if row else Decimal(0)

    async def pending_orders(self) -> list[Order]:
        rows = self._db.execute(f"{_SELECT_ORDER} WHERE state='pending' ORDER BY created_at, rowid")
        return [_order_from_row(r) for r in rows]

    async def apply_ticks(self, ticks: list[dict[str, Any]], judge: JudgeTick) -> list[str]:
        """Judge each tick against the stored one of its symbol, inside one write transaction
        (so replicas merging redundant feeds agree), and store those judged ``applied``."""
        db = self._tx()
        try:
            now = time.time()
            symbols = list({t["symbol"] for t in ticks})
            stored: dict[str, dict[str, Any]] = {}
            for chunk in _chunks(symbols, 500):
                for r in db.execute(f"{_SELECT_TICK} WHERE symbol IN ({','.join('?' * len(chunk))})", chunk):
                    stored[r[0]] = _tick_from_row(r)
            version = db.execute("SELECT coalesce(max(version), 0) FROM ticks").fetchone()[0]
            outcomes, rows = [], {}
            for tick in ticks:
                outcome = judge(stored.get(tick["symbol"]), tick, now)
                outcomes.append(outcome)
                if outcome == TICK_APPLIED:
                    version += 1
                    stored[tick["symbol"]] = applied = {**tick, "received_at": now, "version": version}
                    rows[tick["symbol"]] = _tick_row(applied)
            if rows:
                db.executemany(_UPSERT_TICK, list(rows.values()))
        except BaseException as exc:
            self._rollback(exc)
            raise
        self._commit()
        return outcomes

    async def ticks_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        rows = self._db.execute(f"{_SELECT_TICK} WHERE version > ? ORDER BY version", (version,)).fetchall()
        ticks = [_tick_from_row(r) for r in rows]
        return (ticks[-1]["version"] if ticks else version), ticks

    async def load_ticks(self) -> dict[str, dict[str, Any]]:
        return {t["symbol"]: t for t in (await self.ticks_since(-1))[1]}

    async def append_audit(self, kind: str, actor: str, subject: str, detail: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(_INSERT_AUDIT, (time.time(), kind, actor, subject, json.dumps(detail, default=str)))

    async def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT at, kind, actor, subject, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [{"at": r[0], "kind": r[1], "actor": r[2], "subject": r[3], "detail": json.loads(r[4])} for r in rows]

    async def raise_escalation(self, key: str, client_order_id: str, payload: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO escalations VALUES (?,?,?,?,NULL)",
                (key, client_order_id, json.dumps(payload, default=str), time.time()),
            )

    async def undelivered_escalations(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT key, client_order_id, payload, created_at FROM escalations WHERE delivered_at IS NULL"
            " ORDER BY created_at LIMIT ?",
            (limit,),
        )
        return [{"key": r[0], "client_order_id": r[1], "payload": json.loads(r[2]), "created_at": r[3]} for r in rows]

    async def mark_escalations_delivered(self, keys: list[str]) -> None:
        now = time.time()
        with self._write() as db:
            db.executemany("UPDATE escalations SET delivered_at=? WHERE key=?", [(now, k) for k in keys])

    async def close(self) -> None:
        self._db.close()

    async def open_orders(self, limit: int = 500, after: tuple[float, str, str] | None = None) -> list[Order]:
        if not getattr(self, "_open_index", False):  # created on first use (existing files get it too)
            self._db.execute(f"CREATE INDEX IF NOT EXISTS orders_open ON orders(state, created_at) WHERE {_OPEN}")
            self._open_index = True
        where, args = (" AND (created_at, account, client_order_id) > (?, ?, ?)", after) if after else ("", ())
        rows = self._db.execute(
            f"{_SELECT_ORDER} WHERE {_OPEN}{where} ORDER BY created_at, account, client_order_id LIMIT ?", (*args, limit)
        )
        return [_order_from_row(r) for r in rows]

    async def take_leases(self, orders: list[Order], owner: str, seconds: float) -> list[Order]:
        db = self._tx()
        try:
            now = time.time()
            stored = self._orders_by_key({(o.account, o.client_order_id) for o in orders})
            taken: dict[str, Order] = {}
            for o in orders:
                s = stored.get(o.key)
                if s is None or o.key in taken or s.state is not o.state or s.filled_quantity != o.filled_quantity:
                    continue
                if (
                    s.lease_owner not in (None, owner)
                    and s.lease_until > now
                    and (s.state is OrderState.PENDING or s.lease_owner.endswith(":reconcile"))
                ):  # held by another (past pending, only another loop's lease counts)
                    continue
                s.lease_owner, s.lease_until = owner, now + seconds
                taken[o.key] = s
            db.executemany(
                "UPDATE orders SET lease_owner=?, lease_until=? WHERE account=? AND client_order_id=?",
                [(owner, s.lease_until, s.account, s.client_order_id) for s in taken.values()],
            )
        except BaseException as exc:
            self._rollback(exc)
            raise
        self._commit()
        return list(taken.values())


_OPEN = "state IN ('pending', 'accepted', 'partially_filled')"  # open_orders (and its index)


def _free_space(path: str) -> str:
    import shutil

    try:
        usage = shutil.disk_usage(Path(path).parent)
    except OSError as exc:
        return f"free space unknown ({exc})"
    return f"{usage.free:,} bytes free of {usage.total:,} on its filesystem"


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
