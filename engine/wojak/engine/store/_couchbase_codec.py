"""The Couchbase store's documents: how orders, positions, ticks and accounts are encoded, and
the keys' components (the layout is in ``_couchbase``'s docstring). Pure functions, no I/O."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any, Callable, Sequence

from wojak.engine.domain import AccountView, Order, OrderState, Position, Side

_ZERO = Decimal(0)


def decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def text_decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def path_key(value: str) -> str:
    """A map key safe in a sub-document path (``.``, ``[``, ``]`` and backquote escaped)."""
    for ch, rep in (("%", "%25"), (".", "%2E"), ("[", "%5B"), ("]", "%5D"), ("`", "%60")):
        value = value.replace(ch, rep)
    return value


def doc_key(value: str) -> str:
    """A key component that cannot contain the ``::`` separator."""
    return value.replace("%", "%25").replace(":", "%3A")


def order_doc(o: Order) -> dict[str, Any]:
    doc = o.to_wire()
    doc["fingerprint"] = o.fingerprint
    doc["lease_owner"], doc["lease_until"] = o.lease_owner, o.lease_until
    return doc


def order_from_doc(d: dict[str, Any]) -> Order:
    return Order(
        client_order_id=d["client_order_id"],
        account=d["account"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        quantity=Decimal(d["quantity"]),
        order_type=d["order_type"],
        limit_price=text_decimal(d["limit_price"]),
        time_in_force=d["time_in_force"],
        tag=d["tag"],
        fingerprint=d["fingerprint"],
        state=OrderState(d["state"]),
        filled_quantity=Decimal(d["filled_quantity"]),
        average_price=text_decimal(d["average_price"]),
        venue_order_id=d["venue_order_id"],
        reason=d["reason"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        principal=d.get("principal"),
        lease_owner=d.get("lease_owner"),
        lease_until=d.get("lease_until") or 0.0,
    )


def account_of(key: str) -> str:
    """The account of an order key (``<account>/<coid>``) or trade id (``<account>/<coid>#<n>``)."""
    return key.split("/", 1)[0]


def coid_of(key: str) -> str:
    return key.split("/", 1)[1].split("#", 1)[0] if "/" in key else key


def account_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """fnmatch patterns with only ``*`` and ``?`` (as SQLite's GLOB reads them for these names)."""
    regex = "|".join("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in p) for p in patterns)
    compiled = re.compile(f"(?:{regex})\\Z", re.DOTALL) if patterns else None
    return (lambda account: compiled.match(account) is not None) if compiled else (lambda account: False)


# what a stored tick always has (None if the tick had no such field): SQLite's columns
TICK_FIELDS = ("symbol", "bid", "ask", "last", "received_at", "sequence", "exchange_time", "version", "day", "sod_price")


def tick_from_doc(d: dict[str, Any]) -> dict[str, Any]:
    """A stored tick as the store protocol returns it: the tick as judged, ``received_at`` and
    ``version`` (without the doc's bookkeeping)."""
    return {**dict.fromkeys(TICK_FIELDS), **{k: v for k, v in d.items() if k not in ("_w", "p")}}


def position_from_doc(d: dict[str, Any] | None, account: str, symbol: str, exclude: str | None = None) -> Position:
    if d is None:
        return Position(account, symbol)
    p = Position(
        account,
        symbol,
        Decimal(d["quantity"]),
        Decimal(d["average_price"]),
        Decimal(d["realised_pnl"]),
        sod_day=d.get("sod_day") or "",
        sod_quantity=Decimal(d.get("sod_quantity") or "0"),
        sod_average=Decimal(d.get("sod_average") or "0"),
    )
    for entry in d.get("res", {}).values():
        q = Decimal(entry["q"])
        if entry["c"] != exclude and q:
            u = entry.get("u")
            p.reserve(q, Decimal(u) * abs(q) if u else _ZERO)
    return p


def new_position_doc(account: str, symbol: str) -> dict[str, Any]:
    return {"account": account, "symbol": symbol, "quantity": "0", "average_price": "0", "realised_pnl": "0", "res": {}}


def write_token() -> str:
    return uuid.uuid4().hex


def next_account_doc(acct: dict[str, Any] | None, order: Order, view: AccountView, now: float) -> dict[str, Any]:
    """The account doc after admitting ``order``: its symbol listed, the order counted in the
    rate window (if it passed), a HALTED state stored (if risk set one); old buckets pruned."""
    new: dict[str, Any] = dict(acct) if acct is not None else {"account": order.account, "symbols": [], "rate": {}}
    symbols = list(new.get("symbols") or [])
    if order.symbol not in symbols:
        symbols.append(order.symbol)
    new["symbols"] = symbols
    sec = int(now)
    rate = {s: n for s, n in (new.get("rate") or {}).items() if int(s) > sec - 120}
    if order.state is OrderState.PENDING:
        rate[str(sec)] = rate.get(str(sec), 0) + 1
    new["rate"] = rate
    if view.halt is not None:
        new["state"] = {"account": order.account, "state": "HALTED", "reason": view.halt, "at": now}
    return new


def days_ago(day: str, n: int) -> str:
    try:
        return (dt.date.fromisoformat(day) - dt.timedelta(days=n)).isoformat()
    except ValueError:
        return ""
