"""State: orderbook, tradebook, positions, last ticks and the escalation outbox."""

from wojak.engine.domain import AccountView
from wojak.engine.store._base import TICK_APPLIED, Execution, JudgeTick, Store, StoreUnavailable, Trade, utc_day
from wojak.engine.store._open import open_store
from wojak.engine.store._sqlite import SQLiteStore

__all__ = [
    "TICK_APPLIED",
    "AccountView",
    "Execution",
    "JudgeTick",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "Trade",
    "open_store",
    "utc_day",
]
