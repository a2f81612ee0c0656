from __future__ import annotations

from decimal import Decimal

import pytest

from tests.engine._sql_steps import sqlite_steps
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


def resting(tmp_path, seconds="10", **extra):
    return Sandbox(SandboxConfig(fill_probability=Decimal(0), accept_probability=Decimal(1),
                                 ledger=str(tmp_path / "l.sqlite"), later_fill_seconds=Decimal(seconds), **extra))  # fmt: skip


def lookup(sb, batch):
    return sb.handle({"action": "lookup", "orders": batch})["reports"]


def test_resting_orders_fill_later_on_lookup_after_the_configured_seconds(tmp_path):
    sb = resting(tmp_path)
    now = [1000.0]
    sb.clock = lambda: now[0]
    batch = orders(40, account="desk")
    assert {r["status"] for r in sb.handle({"orders": batch})["reports"]} == {"accepted"}
    first_at = sb._db.execute("SELECT min(first_at) FROM executions").fetchone()[0]
    now[0] = first_at + 9.9
    assert {r["status"] for r in lookup(sb, batch)} == {"accepted"}  # not yet
    now[0] = first_at + 10
    stepped = lookup(sb, batch)
    assert {r["status"] for r in stepped} == {"filled", "partially_filled"}  # a full fill or half of it
    assert lookup(sb, batch) == stepped  # recorded: every later lookup answers the same ...
    assert lookup(resting(tmp_path), batch) == stepped  # ... also from the ledger file alone
    for r in stepped:
        assert r["filled_quantity"] in ("5", "10") and (r["status"] == "filled") == (r["filled_quantity"] == "10")
        assert Decimal("95") <= Decimal(r["average_price"]) <= Decimal("100")  # a buy at or below its limit
    now[0] += 10  # the next step, another 10 seconds on
    final = lookup(sb, batch)
    assert all(r["filled_quantity"] in ("7", "10") for r in final)
    for before, after in zip(stepped, final):
        if before["status"] == "filled":
            assert after == before
        else:  # the average stays exact: the new fill's own price is within the limit
            q0, p0, q1, p1 = (Decimal(before["filled_quantity"]), Decimal(before["average_price"]),
                              Decimal(after["filled_quantity"]), Decimal(after["average_price"]))  # fmt: skip
            own = (q1 * p1 - q0 * p0) / (q1 - q0)
            assert Decimal("95") <= own <= Decimal("100") and own == own.to_integral_value()


def test_later_fills_are_deterministic_by_seed_and_sells_fill_at_or_above_their_limit(tmp_path):
    def run(seed, path):
        sb = Sandbox(SandboxConfig(seed=seed, fill_probability=Decimal(0), accept_probability=Decimal(1),
                                   ledger=str(path), later_fill_seconds=Decimal(0)))  # fmt: skip
        batch = orders(30, side="sell", account="desk")
        sb.handle({"orders": batch})
        return [lookup(sb, batch) for _ in range(4)]

    a, b, c = run("s1", tmp_path / "a.sqlite"), run("s1", tmp_path / "b.sqlite"), run("s2", tmp_path / "c.sqlite")
    assert a == b and a != c
    assert all(Decimal(r["average_price"]) >= 100 for step in a for r in step)


def test_first_submissions_are_unchanged_by_later_fills(tmp_path):
    plain = Sandbox(SandboxConfig(partial_probability=Decimal("0.05"), accept_probability=Decimal("0.05")))
    later = Sandbox(SandboxConfig(partial_probability=Decimal("0.05"), accept_probability=Decimal("0.05"),
                                  ledger=str(tmp_path / "x.sqlite"), later_fill_seconds=Decimal(0)))  # fmt: skip
    batch = orders(300)
    assert later.handle({"orders": batch}) == plain.handle({"orders": batch})
    assert [later.outcome(o) for o in batch] == [plain.outcome(o) for o in batch]


def test_cancel_after_a_later_fill_keeps_the_fill_and_without_the_setting_nothing_fills_later(tmp_path):
    sb = resting(tmp_path, "0")
    [o] = orders(1, account="desk", quantity="1")
    sb.handle({"orders": [o]})
    [r] = sb.handle({"action": "cancel", "orders": [o]})["reports"]
    assert r["status"] == "filled"  # it filled before the cancel arrived: nothing left to cancel
    still = Sandbox(SandboxConfig(fill_probability=Decimal(0), accept_probability=Decimal(1), ledger=str(tmp_path / "n.sqlite")))
    still.handle({"orders": orders(5)})
    assert {r["status"] for _ in range(3) for r in lookup(still, orders(5))} == {"accepted"}


def test_later_fill_setting_from_the_environment(monkeypatch, tmp_path):
    assert SandboxConfig.from_env({}).later_fill_seconds is None
    assert SandboxConfig.from_env({"WOJAK_SANDBOX_LATER_FILL_SECONDS": "2.5"}).later_fill_seconds == Decimal("2.5")
    with pytest.raises(ValueError, match="LATER_FILL_SECONDS"):
        SandboxConfig(later_fill_seconds=Decimal(-1))
    import wojak.engine.venue.sandbox as module

    for name, value in {"WOJAK_SANDBOX_FILL_PROBABILITY": "0", "WOJAK_SANDBOX_ACCEPT_PROBABILITY": "1",
                        "WOJAK_SANDBOX_LEDGER": str(tmp_path / "lambda.sqlite"),
                        "WOJAK_SANDBOX_LATER_FILL_SECONDS": "0"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(module, "_sandbox", None)
    [o] = orders(1, account="desk")
    assert handler({"orders": [o]})["reports"][0]["status"] == "accepted"
    assert handler({"action": "lookup", "orders": [o]})["reports"][0]["status"] in ("filled", "partially_filled")


def _ledger_steps(tmp_path, stored: int) -> int:
    """SQLite instructions for executing, then looking up, 20 new orders on a ledger already
    holding ``stored`` orders."""
    sb = Sandbox(SandboxConfig(ledger=str(tmp_path / f"steps-{stored}.sqlite"), fill_probability=Decimal(0),
                               accept_probability=Decimal(1), later_fill_seconds=Decimal(0)))  # fmt: skip
    old = orders(stored, account="desk")
    for start in range(0, stored, 1000):
        sb.handle({"orders": old[start : start + 1000]})
    new = [{**o, "client_order_id": f"new{i}"} for i, o in enumerate(orders(20, account="desk"))]
    with sqlite_steps(sb._db) as steps:
        assert {r["status"] for r in sb.handle({"orders": new})["reports"]} == {"accepted"}
        assert {r["status"] for r in lookup(sb, new)} <= {"filled", "partially_filled"}  # stepped: read by key too
    return steps[0]


def test_the_ledger_reads_a_batch_by_key_not_by_scanning_every_order_it_holds(tmp_path):
    small, large = _ledger_steps(tmp_path, 200), _ledger_steps(tmp_path, 6000)
    assert large < small * 1.5, (small, large)
