"""Property: no sequence of orders and fills (partial, full, rejected, in any order) lets any
account exceed its per-symbol position limit or its gross exposure limit."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wojak.engine.domain import Order, OrderEvent, OrderState
from wojak.engine.protocol import validate_order
from wojak.engine.risk import AccountView, RiskConfig, RiskEngine, gross_exposure
from wojak.engine.service import OrderService
from wojak.engine.store import Execution, SQLiteStore

PRICES = {"A": Decimal(100), "B": Decimal(40), "C": Decimal(7)}
CONFIG = RiskConfig.model_validate({
    "limits": {"max_position": "50", "max_gross_exposure": "6000", "price_band_percent": "5"},
    "instruments": {"A": {}, "B": {"multiplier": "2"}, "C": {"multiplier": "10"}},
})  # fmt: skip
MAX_POSITION = Decimal(50)
MAX_EXPOSURE = Decimal(6000)

submit = st.tuples(
    st.just("submit"), st.sampled_from(["x", "y"]), st.sampled_from(sorted(PRICES)), st.sampled_from(["buy", "sell"]),
    st.integers(1, 40),
)  # fmt: skip
execute = st.tuples(st.just("fill"), st.integers(0, 1000), st.sampled_from(["all", "part", "reject"]), st.integers(1, 100))
steps = st.lists(st.one_of(submit, execute), min_size=1, max_size=40)


def make_order(n: int, account: str, symbol: str, side: str, qty: int) -> Order:
    wire, errors = validate_order({"client_order_id": f"o{n}", "account": account, "symbol": symbol, "side": side,
                                   "quantity": str(qty), "order_type": "limit", "limit_price": str(PRICES[symbol])})  # fmt: skip
    assert not errors
    return Order.from_wire(wire)


async def run(ops) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "p.sqlite", synchronous="normal")
        service = OrderService(store, None, RiskEngine(CONFIG))  # type: ignore[arg-type]
        service.last_prices.update(PRICES)
        risk = service.risk
        open_orders: list[Order] = []
        for n, op in enumerate(ops):
            if op[0] == "submit":
                _, account, symbol, side, qty = op
                [(o, _)] = await store.admit([make_order(n, account, symbol, side, qty)], service._decide)
                if o.state is OrderState.PENDING:
                    open_orders.append(o)
            elif open_orders:
                _, pick, how, percent = op
                o = open_orders[pick % len(open_orders)]
                expected, previous = o.state, o.filled_quantity
                remaining = o.quantity - previous
                if how == "reject":
                    o.apply(OrderEvent.CANCELED if expected is OrderState.PARTIALLY_FILLED else OrderEvent.REJECTED)
                    fill = Decimal(0)
                elif how == "part" and remaining > 1:
                    fill = max(Decimal(1), (remaining * percent / 100).to_integral_value()) if percent < 100 else remaining - 1
                    fill = min(fill, remaining - 1)
                    o.apply(OrderEvent.PARTIALLY_FILLED)
                else:
                    fill = remaining
                    o.apply(OrderEvent.FILLED)
                if fill:
                    o.filled_quantity = previous + fill
                    o.average_price = o.limit_price
                closed = o.state in (OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELED)
                sign = 1 if o.side.value == "buy" else -1
                release = (remaining if closed else fill) * sign
                await store.record([Execution(o, expected, fill, o.limit_price, release, risk.multiplier(o.symbol))])
                if closed:
                    open_orders.remove(o)
            for account in ("x", "y"):
                positions = {p.symbol: p for p in await store.list_positions(account)}
                for p in positions.values():
                    assert p.worst_case(Decimal(0)) <= MAX_POSITION, p
                    assert abs(p.quantity) <= MAX_POSITION, p
                view = AccountView(account, positions)
                assert gross_exposure(view, PRICES, risk) <= MAX_EXPOSURE
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_no_sequence_of_fills_exceeds_position_or_exposure_limits(ops):
    asyncio.run(run(ops))
