from __future__ import annotations

from decimal import Decimal

import pytest

from wojak.engine.venue import InProcessSandboxVenue, VenueStatus
from wojak.engine.venue.sandbox import Sandbox, SandboxConfig, handler


def orders(n, **extra):
    return [{"client_order_id": f"o{i}", "symbol": "S", "side": "buy", "quantity": "10", "order_type": "limit",
             "limit_price": "100", "time_in_force": "day", **extra} for i in range(n)]  # fmt: skip


def test_outcome_is_a_pure_function_of_id_and_seed():
    a = Sandbox(SandboxConfig(seed="s1"))
    b = Sandbox(SandboxConfig(seed="s1"))
    c = Sandbox(SandboxConfig(seed="s2"))
    batch = orders(200)
    assert a.handle({"orders": batch}) == b.handle({"orders": batch})
    assert a.handle({"orders": batch}) != c.handle({"orders": batch})


@pytest.mark.parametrize("p", ["0", "0.5", "0.9", "1"])
def test_fill_probability_is_honoured(p):
    reports = Sandbox(SandboxConfig(fill_probability=Decimal(p))).handle({"orders": orders(4000)})["reports"]
    filled = sum(r["status"] == "filled" for r in reports) / 4000
    assert abs(filled - float(p)) < 0.03
    for r in reports:
        assert r["status"] in ("filled", "rejected")
        if r["status"] == "filled":
            assert r["filled_quantity"] == "10" and r["average_price"] == "100"


def test_partial_and_accepted_outcomes():
    sb = Sandbox(SandboxConfig(fill_probability=Decimal(0), partial_probability=Decimal("0.5"), accept_probability=Decimal("0.5")))
    statuses = {r["status"] for r in sb.handle({"orders": orders(200)})["reports"]}
    assert statuses == {"partially_filled", "accepted"}
    ioc = {r["status"] for r in sb.handle({"orders": orders(200, time_in_force="ioc")})["reports"]}
    assert "accepted" not in ioc


def test_market_orders_fill_at_the_reference_price_or_are_rejected_without_one():
    sb = Sandbox(SandboxConfig(fill_probability=Decimal(1)))
    [r] = sb.handle({"orders": orders(1, order_type="market", limit_price=None, reference_price="99.5")})["reports"]
    assert r["status"] == "filled" and r["average_price"] == "99.5"
    [r] = sb.handle({"orders": orders(1, order_type="market", limit_price=None)})["reports"]
    assert r["status"] == "rejected" and r["reason"] == "no_reference_price"


def test_ledger_remembers_and_counts_submissions(tmp_path):
    sb = Sandbox(SandboxConfig(ledger=str(tmp_path / "ledger.sqlite")))
    assert sb.handle({"action": "lookup", "orders": orders(1)})["reports"][0]["status"] == "not_found"
    first = sb.handle({"orders": orders(1)})["reports"][0]
    again = sb.handle({"orders": orders(1)})["reports"][0]
    assert first == again
    assert sb.handle({"action": "lookup", "orders": orders(1)})["reports"][0] == first
    assert sb.submissions() == {"o0": 2}
    reopened = Sandbox(SandboxConfig(ledger=str(tmp_path / "ledger.sqlite")))
    assert reopened.submissions() == {"o0": 2}


def test_without_a_ledger_lookup_reports_the_deterministic_outcome():
    sb = Sandbox(SandboxConfig())
    assert sb.handle({"action": "lookup", "orders": orders(3)}) == sb.handle({"orders": orders(3)})


def test_cancel_only_open_orders(tmp_path):
    sb = Sandbox(SandboxConfig(fill_probability=Decimal(0), accept_probability=Decimal(1), ledger=str(tmp_path / "l.sqlite")))
    assert sb.handle({"orders": orders(1)})["reports"][0]["status"] == "accepted"
    assert sb.handle({"action": "cancel", "orders": orders(1)})["reports"][0]["status"] == "canceled"
    assert sb.handle({"action": "lookup", "orders": orders(1)})["reports"][0]["status"] == "canceled"


def test_lambda_handler_entry_point_and_bad_events(monkeypatch):
    monkeypatch.setenv("WOJAK_SANDBOX_FILL_PROBABILITY", "1")
    import wojak.engine.venue.sandbox as module

    monkeypatch.setattr(module, "_sandbox", None)
    assert handler({"order": orders(1)[0]}, None)["reports"][0]["status"] == "filled"
    assert "error" in handler({"action": "explode", "orders": []}, None)
    assert "error" in handler({"orders": "nope"}, None)


def test_config_is_checked():
    with pytest.raises(ValueError, match="must not exceed 1"):
        SandboxConfig(fill_probability=Decimal("0.8"), partial_probability=Decimal("0.3"))
    with pytest.raises(ValueError, match="WOJAK_SANDBOX_FILL_PROBABILITY"):
        SandboxConfig(fill_probability=Decimal("1.5"))


async def test_in_process_venue_returns_reports():
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1)))
    [report] = await venue.execute(orders(1))
    assert report.status is VenueStatus.FILLED and report.filled_quantity == Decimal(10)
