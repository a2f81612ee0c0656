"""The store interface every backend implements (and the shared contract suite tests).

The order path uses two batched calls, each atomic and each safe to crash after:

- ``admit``: create each order record *if absent*; for a new order, call ``decide`` with
  the order and its position (this batch's earlier reservations included) and persist
  what it decided: ``pending`` plus a position reservation, or a final ``denied`` /
  ``escalated`` (with an outbox entry). Existing records are returned untouched.
- ``record``: apply venue outcomes: order state (only if the record is still in the
  state the caller saw: compare-and-set), tradebook entries (unique per fill), and the
  position (fill applied, reservation released).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Protocol
from urllib.parse import parse_qs, urlparse

from wojak.engine.domain import Order, OrderState, Position


class StoreUnavailable(RuntimeError):
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
    applied: bool = False  # set by the store: False means another writer got there first


# decide(order, position) -> escalation payload (for the outbox) or None; it moves the
# order to pending, denied or escalated.
Decide = Callable[[Order, Position], "dict[str, Any] | None"]


class Store(Protocol):
    async def admit(self, orders: list[Order], decide: Decide) -> list[tuple[Order, bool]]:
        """Returns ``(record, existed)`` per order, in order."""
        ...

    async def record(self, executions: list[Execution]) -> None: ...

    async def get_order(self, client_order_id: str) -> Order | None: ...

    async def list_orders(self, limit: int = 100, account: str | None = None) -> list[Order]: ...

    async def list_trades(self, limit: int = 100, client_order_id: str | None = None) -> list[Trade]: ...

    async def get_position(self, account: str, symbol: str) -> Position: ...

    async def list_positions(self, account: str | None = None) -> list[Position]: ...

    async def pending_orders(self) -> list[Order]: ...

    async def put_ticks(self, ticks: list[dict[str, Any]]) -> None: ...

    async def load_ticks(self) -> dict[str, dict[str, Any]]: ...

    async def undelivered_escalations(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def mark_escalations_delivered(self, keys: list[str]) -> None: ...

    async def close(self) -> None: ...


def open_store(url: str) -> Store:
    """A store from its URL: ``sqlite:///PATH[?synchronous=normal|full|extra]`` (default full), or
    ``couchbase://HOST[,HOST...]?bucket=NAME[&scope=S&collection=C&prefix=P]`` with credentials in
    ``WOJAK_COUCHBASE_USERNAME`` / ``WOJAK_COUCHBASE_PASSWORD`` (``couchbases://`` for TLS)."""
    parsed = urlparse(url)
    if parsed.scheme in ("couchbase", "couchbases"):
        import os

        from wojak.engine.store._couchbase import from_url

        username = os.environ.get("WOJAK_COUCHBASE_USERNAME", "")
        password = os.environ.get("WOJAK_COUCHBASE_PASSWORD", "")
        if not username or not password:
            raise ValueError(f"WOJAK_STORE={url!r}: set WOJAK_COUCHBASE_USERNAME and WOJAK_COUCHBASE_PASSWORD")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return from_url(parsed, options, username, password)
    if parsed.scheme == "sqlite":
        from wojak.engine.store._sqlite import SQLiteStore

        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if parsed.netloc or not path:
            raise ValueError(f"WOJAK_STORE={url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        return SQLiteStore(path, synchronous=options.get("synchronous", "full"))
    raise ValueError(f"WOJAK_STORE={url!r}: unsupported scheme {parsed.scheme!r} (use sqlite:///PATH or couchbase://HOST?bucket=NAME)")
