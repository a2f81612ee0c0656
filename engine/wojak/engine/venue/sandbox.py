"""The sandbox broker: an AWS Lambda handler that fills or rejects orders.

An order is identified at the venue by (``account``, ``client_order_id``): ids are unique per
account. The outcome of an order is a pure function of (``client_order_id``, seed), so executing
the same order twice gives the same answer. With a ledger (``WOJAK_SANDBOX_LEDGER``, a
SQLite path) the sandbox also remembers what it received, so ``lookup`` of an order it
never saw answers ``not_found`` and repeated submissions are counted; without one (the
stateless Lambda) ``lookup`` reports the outcome the order has or would have, which is
the same thing for a pure function.

Later fills (``WOJAK_SANDBOX_LATER_FILL_SECONDS``, ledger only; unset = never): a ``lookup``
(or ``cancel``) of an order the ledger holds as ``accepted`` or ``partially_filled`` at least
that many seconds after its last change moves it one step: the whole remaining quantity, or
half of it (whole units), at a price drawn from (seed, order, quantity filled so far) within
its limit (a buy at or below it, a sell at or above it, in steps of the limit's last decimal
place; a market order at its reference price). The step is written to the ledger, so every
later lookup answers the same; the reported ``average_price`` is always exact, so the engine
derives each fill's own price from it. ``outcome`` (first submissions) is unchanged.

Event: ``{"action": "execute"|"lookup"|"cancel", "orders": [order, ...]}`` where an order
has ``client_order_id, symbol, side, quantity, order_type, limit_price`` and an optional
``reference_price`` (the engine's last tick, used to fill market orders).
Response: ``{"reports": [report, ...]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, Inexact, localcontext
from typing import Any, Mapping

from wojak.engine._sqlite_keys import rows_by_pairs

_SCALE = 1_000_000


@dataclass(frozen=True)
class SandboxConfig:
    seed: str = "wojak"
    fill_probability: Decimal = Decimal("0.9")
    partial_probability: Decimal = Decimal("0")
    accept_probability: Decimal = Decimal("0")
    ledger: str | None = None
    latency_ms: Decimal = Decimal(0)  # simulated venue round trip (in-process venue only)
    # a slower round trip for some accounts (in-process venue only): a call carrying one takes that long
    account_latency_ms: tuple[tuple[str, Decimal], ...] = ()
    later_fill_seconds: Decimal | None = None  # resting orders fill later, on lookup (ledger only)

    def __post_init__(self) -> None:
        total = self.fill_probability + self.partial_probability + self.accept_probability
        for name in ("fill_probability", "partial_probability", "accept_probability"):
            if not Decimal(0) <= getattr(self, name) <= Decimal(1):
                raise ValueError(f"WOJAK_SANDBOX_{name.upper()} must be within [0, 1]")
        if total > 1:
            raise ValueError("sandbox fill + partial + accept probabilities must not exceed 1")
        if self.later_fill_seconds is not None and not self.later_fill_seconds >= 0:
            raise ValueError("WOJAK_SANDBOX_LATER_FILL_SECONDS must be a number of seconds >= 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "SandboxConfig":
        env = os.environ if environ is None else environ
        return cls(
            seed=env.get("WOJAK_SANDBOX_SEED", "wojak"),
            fill_probability=Decimal(env.get("WOJAK_SANDBOX_FILL_PROBABILITY", "0.9")),
            partial_probability=Decimal(env.get("WOJAK_SANDBOX_PARTIAL_PROBABILITY", "0")),
            accept_probability=Decimal(env.get("WOJAK_SANDBOX_ACCEPT_PROBABILITY", "0")),
            ledger=env.get("WOJAK_SANDBOX_LEDGER") or None,
            latency_ms=Decimal(env.get("WOJAK_SANDBOX_LATENCY_MS", "0")),
            account_latency_ms=_account_latencies(env.get("WOJAK_SANDBOX_ACCOUNT_LATENCY_MS", "")),
            later_fill_seconds=Decimal(env["WOJAK_SANDBOX_LATER_FILL_SECONDS"])
            if env.get("WOJAK_SANDBOX_LATER_FILL_SECONDS")
            else None,
        )


def _account_latencies(text: str) -> tuple[tuple[str, Decimal], ...]:
    """``ACCOUNT=MS,ACCOUNT=MS`` -> ((account, ms), ...)."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        account, sep, ms = item.partition("=")
        try:
            latency = Decimal(ms)
        except ArithmeticError:
            latency = Decimal(-1)
        if not sep or not account.strip() or not latency.is_finite() or latency < 0:
            raise ValueError(f"WOJAK_SANDBOX_ACCOUNT_LATENCY_MS: {item!r} is not ACCOUNT=MILLISECONDS")
        found.append((account.strip(), latency))
    return tuple(found)


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._fill = int(config.fill_probability * _SCALE)
        self._partial = self._fill + int(config.partial_probability * _SCALE)
        self._accept = self._partial + int(config.accept_probability * _SCALE)
        self._seed = config.seed.encode()
        self._db: sqlite3.Connection | None = None
        self._later = None if config.later_fill_seconds is None else float(config.later_fill_seconds)
        self.clock = time.time  # when later fills are due (tests may replace it)
        if config.ledger:
            self._db = sqlite3.connect(config.ledger, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(executions)")}
            if columns and "account" not in columns:  # a ledger from before ids were per account
                self._db.execute("ALTER TABLE executions RENAME TO executions_before_accounts")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS executions (account TEXT NOT NULL, client_order_id TEXT NOT NULL,"
                " report TEXT NOT NULL, submissions INTEGER NOT NULL, first_at REAL NOT NULL,"
                " PRIMARY KEY (account, client_order_id))"
            )
            if "stepped_at" not in {r[1] for r in self._db.execute("PRAGMA table_info(executions)")}:
                try:
                    self._db.execute("ALTER TABLE executions ADD COLUMN stepped_at REAL")  # the last later fill
                except sqlite3.OperationalError as exc:  # another process opening the ledger added it first
                    if "duplicate column" not in str(exc):
                        raise

    def outcome(self, order: dict[str, Any]) -> dict[str, Any]:
        """The deterministic report for an order."""
        coid = order["client_order_id"]
        digest = hashlib.blake2b(coid.encode(), key=self._seed[:64], digest_size=8).digest()
        draw = int.from_bytes(digest, "big") % _SCALE
        account = str(order.get("account") or "")
        venue_order_id = "SBX-" + hashlib.blake2b(f"{account}/{coid}".encode(), key=self._seed[:64], digest_size=8).hexdigest()
        price = order.get("limit_price") or order.get("reference_price")
        report: dict[str, Any] = {
            "client_order_id": coid,
            "venue_order_id": venue_order_id,
            "filled_quantity": "0",
            "average_price": None,
            "reason": None,
        }
        quantity = Decimal(order["quantity"])
        if draw < self._partial and price is None:
            report.update(status="rejected", reason="no_reference_price")
        elif draw < self._fill:
            report.update(status="filled", filled_quantity=str(quantity), average_price=str(price))
        elif draw < self._partial:
            half = (quantity / 2).quantize(Decimal(1)) or quantity
            status = "filled" if half >= quantity else "partially_filled"
            report.update(status=status, filled_quantity=str(half), average_price=str(price))
        elif draw < self._accept and order.get("order_type") == "limit" and order.get("time_in_force") != "ioc":
            report.update(status="accepted")
        else:
            report.update(status="rejected", reason="sandbox_rejected")
        return report

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        action = event.get("action", "execute")
        orders = event.get("orders")
        if orders is None and "order" in event:
            orders = [event["order"]]
        if not isinstance(orders, list):
            return {"error": "event needs `orders`: a list of orders"}
        if action == "execute":
            return {"reports": self._execute(orders)}
        if action == "lookup":
            return {"reports": self._lookup(orders)}
        if action == "cancel":
            return {"reports": self._cancel(orders)}
        return {"error": f"unknown action {action!r}: use execute, lookup or cancel"}

    def _execute(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reports = [self.outcome(o) for o in orders]
        if self._db is None:
            return reports
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            known = self._known(orders)
            now = time.time()
            fresh: dict[tuple[str, str], dict[str, Any]] = {}
            again: list[tuple[str, str]] = []
            out: list[dict[str, Any]] = []
            for order, report in zip(orders, reports):  # idempotent: the first outcome stands; resubmissions are counted
                key = _key(order)
                first = known.get(key) or fresh.get(key)
                if first is None:
                    fresh[key] = report
                    out.append(report)
                else:
                    again.append(key)
                    out.append(first)
            db.executemany(
                "INSERT INTO executions (account, client_order_id, report, submissions, first_at) VALUES (?,?,?,1,?)",
                [(*k, json.dumps(r), now) for k, r in fresh.items()],
            )
            db.executemany("UPDATE executions SET submissions=submissions+1 WHERE account=? AND client_order_id=?", again)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def _known(self, orders: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        assert self._db is not None
        known: dict[tuple[str, str], dict[str, Any]] = {}
        rows = rows_by_pairs(
            self._db, "t.account, t.client_order_id, t.report", "executions", _LEDGER_KEY, {_key(o) for o in orders}
        )
        known.update(((a, c), json.loads(r)) for a, c, r in rows)
        return known

    def _lookup(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._db is None:
            return [self.outcome(o) for o in orders]
        known = self._known(orders)
        if self._later is not None and any(r.get("status") in _RESTING for r in known.values()):
            known = self._fill_later(orders)
        return [known.get(_key(o)) or {"client_order_id": o["client_order_id"], "status": "not_found"} for o in orders]

    def _fill_later(self, orders: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Move each resting order that is due one step (see the module docstring), in one
        write transaction that reads the ledger afresh, so concurrent lookups step it once."""
        assert self._db is not None and self._later is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            known = self._known(orders)
            now = self.clock()
            due: dict[tuple[str, str], float] = {}
            resting = [key for key, r in known.items() if r.get("status") in _RESTING]
            rows = rows_by_pairs(
                db, "t.account, t.client_order_id, coalesce(t.stepped_at, t.first_at)", "executions", _LEDGER_KEY, resting
            )
            due.update(((a, c), at) for a, c, at in rows if now - at >= self._later)
            updates = []
            for order in orders:
                key = _key(order)
                if key in due:
                    stepped = self.later_fill(order, known[key])
                    if stepped is not None:
                        known[key] = stepped
                        updates.append((json.dumps(stepped), now, *key))
                    del due[key]  # one step per lookup, even if the order is named twice
            db.executemany("UPDATE executions SET report=?, stepped_at=? WHERE account=? AND client_order_id=?", updates)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return known

    def later_fill(self, order: dict[str, Any], report: dict[str, Any]) -> dict[str, Any] | None:
        """The report after one later-fill step of a resting ``order`` (a pure function of the
        seed, the order and ``report``), or None if it cannot fill (nothing left, no price)."""
        quantity, filled = Decimal(order["quantity"]), Decimal(report.get("filled_quantity") or "0")
        remaining = quantity - filled
        if remaining <= 0:
            return None
        account = str(order.get("account") or "")
        digest = hashlib.blake2b(
            f"{account}/{order['client_order_id']}#{filled}".encode(), key=self._seed[:64], digest_size=8
        ).digest()
        draw = int.from_bytes(digest, "big")
        step = remaining
        if draw % 2:  # a further partial step: half of what is left, in whole units
            half = (remaining / 2).quantize(Decimal(1), rounding=ROUND_DOWN)
            if 0 < half < remaining:
                step = half
        previous = Decimal(report["average_price"]) if report.get("average_price") is not None else None
        limit = order.get("limit_price")
        candidates: list[Decimal] = []
        if limit is not None:
            limit_d = Decimal(limit)
            unit = Decimal(1).scaleb(min(int(limit_d.as_tuple().exponent), 0))
            better = -1 if order.get("side") == "buy" else 1  # below a buy's limit, above a sell's
            steps = (draw >> 1) % 6
            candidates = [limit_d + better * k * unit for k in range(steps, -1, -1)]
        elif order.get("reference_price") is not None:
            candidates = [Decimal(order["reference_price"])]
        if previous is not None:
            candidates.append(previous)  # always keeps the average exact
        total = filled + step
        for price in candidates:
            if price <= 0:
                continue
            try:
                with localcontext() as ctx:
                    # exact in 20 digits, or the engine could not recover this fill's own price
                    ctx.prec, ctx.traps[Inexact] = 20, True
                    average = (step * price + (filled * previous if previous is not None else 0)) / total
            except Inexact:
                continue
            return {
                **report,
                "status": "filled" if total == quantity else "partially_filled",
                "filled_quantity": _plain(total),
                "average_price": _plain(average),
            }
        return None

    def _cancel(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for order, report in zip(orders, self._lookup(orders)):
            if report["status"] in ("accepted", "partially_filled"):
                report = {**report, "status": "canceled"}
                if self._db is not None:
                    with self._db:
                        self._db.execute(
                            "UPDATE executions SET report=? WHERE account=? AND client_order_id=?",
                            (json.dumps(report), *_key(order)),
                        )
            out.append(report)
        return out

    def submissions(self) -> dict[str, int]:
        """How many times each order was submitted (ledger only): a test's view of the venue."""
        if self._db is None:
            return {}
        return dict(self._db.execute("SELECT client_order_id, submissions FROM executions"))

    def submissions_by_order(self) -> dict[tuple[str, str], int]:
        """Submissions per (account, client_order_id) (ledger only)."""
        if self._db is None:
            return {}
        return {(a, c): n for a, c, n in self._db.execute("SELECT account, client_order_id, submissions FROM executions")}


_RESTING = ("accepted", "partially_filled")
_LEDGER_KEY = ("account", "client_order_id")  # the ledger's primary key


def _plain(value: Decimal) -> str:
    """A decimal as a plain string without exponent or trailing zeros (100, 99.5)."""
    return format(value.normalize(), "f")


def _key(order: dict[str, Any]) -> tuple[str, str]:
    return str(order.get("account") or ""), str(order["client_order_id"])


_sandbox: Sandbox | None = None


def _override_reports(answer: dict[str, Any]) -> None:
    raw = os.environ.get("WOJAK_SANDBOX_REPORT_OVERRIDES")
    if not raw or os.environ.get("WOJAK_TEST_FAULTS") != "1":
        return
    overrides = json.loads(raw)
    for report in answer.get("reports") or []:
        report.update(overrides.get(report.get("client_order_id"), {}))


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The AWS Lambda entry point (``wojak.engine.venue.sandbox.handler``).

    ``WOJAK_SANDBOX_LAMBDA_DELAY_MS`` (tests): sleep that long after an ``execute``, before
    answering, so a client times out *after* the venue acted (the outcome-unknown path).
    ``WOJAK_SANDBOX_REPORT_OVERRIDES`` (tests, only with ``WOJAK_TEST_FAULTS=1``): a JSON map
    client_order_id -> fields that replace those of its report, so a test can make the venue
    answer what a broken or hostile one would (a fill beyond the limit, a NaN price, ...).
    """
    global _sandbox
    if _sandbox is None:
        _sandbox = Sandbox(SandboxConfig.from_env())
    answer = _sandbox.handle(event)
    _override_reports(answer)
    delay = os.environ.get("WOJAK_SANDBOX_LAMBDA_DELAY_MS")
    if delay and event.get("action", "execute") == "execute":
        time.sleep(float(delay) / 1000)
    return answer
