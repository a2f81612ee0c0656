"""The store interface every backend implements (and the shared contract suite tests).

The order path uses two batched calls, each atomic and each safe to crash after:

- ``admit``: create each order record *if absent*; for a new order, call ``decide`` with
  the order and an ``AccountView`` of its account (every position of the account, this
  batch's earlier reservations included; today's realised P&L; the order-rate window;
  the stored trading-state override) and persist what it decided: ``pending`` plus a
  position reservation (quantity, and ``view.loss_per_unit`` x quantity as ``pending_loss``)
  and a rate count, or a final ``denied`` / ``escalated`` (with an outbox entry), and
  ``view.halt`` if it set one. Existing records are returned untouched.
  All of it runs inside the store's atomic step, so replicas sharing a store enforce
  account limits together.
- ``record``: apply venue outcomes: order state (only if the record is still in the
  state the caller saw: compare-and-set), tradebook entries (unique per fill), and the
  position (fill applied, reservation released: the quantity ``release`` names and, pro
  rata, the order's ``pending_loss``, i.e. its ``loss_per_unit`` x that quantity). A record
  that does not apply (compare-and-set lost, e.g. a replay) releases nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Protocol, Sequence

from wojak.engine.domain import AccountView, Order, OrderState, Position
from wojak.errors import WojakError


class StoreUnavailable(WojakError, RuntimeError):
    """The store cannot be reached right now: the engine answers `retry`."""


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: str
    client_order_id: str
    account: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    venue_order_id: str | None
    executed_at: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "client_order_id": self.client_order_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": str(self.quantity),
            "price": str(self.price),
            "venue_order_id": self.venue_order_id,
            "executed_at": self.executed_at,
        }


@dataclass(slots=True)
class Execution:
    """One venue outcome to record for ``order`` (already moved to its new state)."""

    order: Order
    expected_state: OrderState  # the stored state this outcome applies to
    fill_quantity: Decimal  # newly filled by this outcome (0 if none)
    fill_price: Decimal | None
    release: Decimal  # signed reservation to release (the order's quantity once it is closed)
    multiplier: Decimal = Decimal(1)
    day: str = ""  # the exchange trading day the fill's realised P&L counts toward ("" = UTC today)
    pnl_quantum: Decimal | None = None  # realised P&L is rounded to this (the instrument's currency unit)
    applied: bool = False  # set by the store: False means another writer got there first


def utc_day(now: float | None = None) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.timezone.utc).date().isoformat()


# judge(stored tick of the symbol or None, new tick, now) -> an outcome: TICK_APPLIED stores
# it; anything else (stale, duplicate, suspect) leaves the stored tick as it was.
JudgeTick = Callable[["dict[str, Any] | None", "dict[str, Any]", float], str]
TICK_APPLIED = "applied"

# decide(order, view) -> escalation payload (for the outbox) or None; it moves the order
# to pending, denied or escalated. ``day`` given to ``admit`` is the exchange trading day.
Decide = Callable[[Order, AccountView], "dict[str, Any] | None"]


class Store(Protocol):
    async def admit(
        self, orders: list[Order], decide: Decide, day: str = "", lease: tuple[str, float] | None = None
    ) -> list[tuple[Order, bool]]:
        """Returns ``(record, existed)`` per order, in order (``day`` "" = UTC today).

        ``lease`` = (owner, seconds): a new ``pending`` order is stored with an execution lease
        for ``owner``; an existing ``pending`` one whose lease is free, ``owner``'s or expired is
        re-leased to ``owner`` in the same transaction. An existing one under another owner's
        live lease is returned as it is (``record.lease_owner`` says whose): the caller must not
        submit it."""
        ...

    async def get_account_state(self, account: str) -> dict[str, Any] | None:
        """The stored trading-state override ``{"account", "state", "reason", "at"}`` or None."""
        ...

    async def set_account_state(self, account: str, state: str | None, reason: str = "", actor: str = "") -> None:
        """Store an override (e.g. ``HALTED``) or, with ``None``, reset to the configuration.
        Every change is also appended to the audit log (who, why, when)."""
        ...

    async def list_account_states(self) -> list[dict[str, Any]]: ...

    async def daily_realised(self, account: str, day: str) -> Decimal: ...

    async def record(self, executions: list[Execution]) -> None: ...

    async def get_order(self, account: str, client_order_id: str) -> Order | None:
        """``client_order_id`` is unique per account: the pair names one order."""
        ...

    async def list_orders(
        self,
        limit: int = 100,
        account: str | None = None,
        patterns: Sequence[str] | None = None,
        before: tuple[float, str, str] | None = None,
    ) -> list[Order]:
        """Newest first by (created_at, account, client_order_id); ``patterns`` (fnmatch ``*``/``?``)
        restricts the accounts; ``before`` pages (strictly older than that triple)."""
        ...

    async def list_trades(
        self, limit: int = 100, client_order_id: str | None = None, account: str | None = None
    ) -> list[Trade]: ...

    async def get_position(self, account: str, symbol: str) -> Position: ...

    async def list_positions(self, account: str | None = None) -> list[Position]: ...

    async def pending_orders(self) -> list[Order]: ...

    async def apply_ticks(self, ticks: list[dict[str, Any]], judge: JudgeTick) -> list[str]:
        """Judge each tick against its symbol's stored one atomically; store those ``applied``
        (stamped ``received_at`` and a store-wide increasing ``version``). Outcomes in order."""
        ...

    async def ticks_since(self, version: int) -> tuple[int, list[dict[str, Any]]]:
        """Ticks stored with a ``version`` above ``version``, and the newest version: every replica
        refreshes its prices from here, so all read the same last tick."""
        ...

    async def load_ticks(self) -> dict[str, dict[str, Any]]: ...

    async def append_audit(self, kind: str, actor: str, subject: str, detail: dict[str, Any]) -> None:
        """Append to the audit log (never updated or deleted)."""
        ...

    async def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: ``{"at", "kind", "actor", "subject", "detail"}``."""
        ...

    async def raise_escalation(self, key: str, client_order_id: str, payload: dict[str, Any]) -> None:
        """Put an escalation raised outside ``admit`` (e.g. a venue anomaly) in the outbox, once per key."""
        ...

    async def undelivered_escalations(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def mark_escalations_delivered(self, keys: list[str]) -> None: ...

    async def close(self) -> None: ...

    async def open_orders(self, limit: int = 500, after: tuple[float, str, str] | None = None) -> list[Order]:
        """Orders the venue may still change (``pending``, ``accepted``, ``partially_filled``), oldest
        first by (created_at, account, client_order_id), strictly after ``after``: the
        reconciliation loop pages through them (``wojak.engine.reconcile``)."""
        ...

    async def take_leases(self, orders: list[Order], owner: str, seconds: float) -> list[Order]:
        """Atomically lease each order to ``owner`` (``<engine id>:reconcile``) for ``seconds`` (0
        hands a lease back) if it is stored unchanged (same state and filled quantity as given)
        and its lease is free, ``owner``'s or expired; returns the stored records taken, lease
        set. Past ``pending`` only a live lease of another ``...:reconcile`` owner is held (the
        order path's own lease ends with ``pending``). The reconciliation loop works only on
        orders it holds, so replicas never book one venue report twice and the order path
        (another owner) never submits a ``pending`` order the loop is releasing."""
        ...
