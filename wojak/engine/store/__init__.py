"""State: orderbook, tradebook, positions, last ticks and the escalation outbox."""

from wojak.engine.store._base import AccountView, Execution, Store, StoreUnavailable, Trade, open_store
from wojak.engine.store._sqlite import SQLiteStore

__all__ = ["AccountView", "Execution", "SQLiteStore", "Store", "StoreUnavailable", "Trade", "open_store"]
