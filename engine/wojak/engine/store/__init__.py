"""State: orderbook, tradebook, positions, last ticks and the escalation outbox."""

from wojak.engine.store._base import (
    TICK_APPLIED,
    AccountView,
    Execution,
    JudgeTick,
    Store,
    StoreUnavailable,
    Trade,
    open_store,
)
from wojak.engine.store._sqlite import SQLiteStore

__all__ = ["TICK_APPLIED", "JudgeTick", "AccountView", "Execution", "SQLiteStore", "Store", "StoreUnavailable", "Trade", "open_store"]
