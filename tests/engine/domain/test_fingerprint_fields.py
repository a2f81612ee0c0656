"""A resend is a ``duplicate`` only if every field of the order is the same; any one field
changed makes it a ``conflict`` (README, "Verdicts"). Each field is varied on its own,
through ``OrderService.handle_batch`` on a real SQLite store, and the fingerprint itself
is checked to depend on every content field.

``account`` is part of the order's identity (ids are unique per account): the same id in
another account is another order, not a conflict.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests._processes import TRADER
from wojak.engine.domain import fingerprint
from wojak.engine.protocol import ORDER_FIELDS, MessageType, validate_order
from wojak.engine.risk import RiskConfig, RiskEngine
from wojak.engine.service import OrderService
from wojak.engine.store import SQLiteStore
from wojak.engine.venue import InProcessSandboxVenue
from wojak.engine.venue.sandbox import SandboxConfig

ORIGINAL = {"client_order_id": "fp-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "10",
            "order_type": "limit", "limit_price": "24001", "time_in_force": "day", "tag": "strategy-a"}  # fmt: skip
# one change per content field: each is a valid order on its own
VARIED = {
    "symbol": {"symbol": "BANKNIFTY-FUT"},
    "side": {"side": "sell"},
    "quantity": {"quantity": "11"},
    "order_type": {"order_type": "market", "limit_price": None},
    "limit_price": {"limit_price": "24002"},
    "time_in_force": {"time_in_force": "ioc"},
    "tag": {"tag": "strategy-b"},
}
# the same content written another way: still the same order
SAME = {
    "reordered keys": dict(reversed(list(ORIGINAL.items()))),
}


@pytest.fixture
def service(tmp_path):
    risk = RiskEngine(RiskConfig.model_validate({
        "limits": {"max_order_quantity": "1000"}, "instruments": {"NIFTY-FUT": {}, "BANKNIFTY-FUT": {}},
    }))  # fmt: skip
    venue = InProcessSandboxVenue(SandboxConfig(fill_probability=Decimal(1)))
    return OrderService(SQLiteStore(tmp_path / "store.sqlite"), venue, risk)


async def submit(service: OrderService, order: dict) -> dict:
    [reply] = await service.handle_batch([(MessageType.SUBMIT_ORDER, {"order": order, "principal": TRADER.to_wire()})])
    return reply


def test_every_content_field_of_an_order_is_varied_here():
    assert set(VARIED) == set(ORDER_FIELDS) - {"client_order_id", "account"}


@pytest.mark.parametrize("field", sorted(VARIED))
async def test_a_resend_differing_in_any_one_field_is_a_conflict(service, field):
    first = await submit(service, ORIGINAL)
    assert first["verdict"] == "filled"
    changed = {**ORIGINAL, **VARIED[field]}
    reply = await submit(service, changed)
    assert reply["verdict"] == "conflict", (field, reply)
    # the stored order is the first one, untouched
    assert reply["order"]["symbol"] == "NIFTY-FUT" and reply["order"]["time_in_force"] == "day"
    assert reply["order"] == first["order"]
    # and the original content is still answered as a duplicate
    assert (await submit(service, ORIGINAL))["verdict"] == "duplicate"


@pytest.mark.parametrize("field", sorted(VARIED))
async def test_the_changed_order_first_then_the_original_is_a_conflict_too(service, field):
    # a market order without a tick is rejected by the venue: stored all the same
    assert (await submit(service, {**ORIGINAL, **VARIED[field]}))["verdict"] in ("filled", "rejected")
    assert (await submit(service, ORIGINAL))["verdict"] == "conflict"


async def test_the_same_content_is_a_duplicate(service):
    first = await submit(service, ORIGINAL)
    for name, same in SAME.items():
        reply = await submit(service, same)
        assert reply["verdict"] == "duplicate", name
        assert reply["order"] == first["order"]


async def test_a_missing_optional_field_is_not_the_same_as_a_given_one(service):
    without_tag = {k: v for k, v in ORIGINAL.items() if k != "tag"}
    assert (await submit(service, without_tag))["verdict"] == "filled"
    assert (await submit(service, ORIGINAL))["verdict"] == "conflict"
    # time_in_force left out is the default (day): the same order
    without_tif = {k: v for k, v in without_tag.items() if k != "time_in_force"}
    assert (await submit(service, without_tif))["verdict"] == "duplicate"
    assert (await submit(service, {**without_tag, "time_in_force": "gtc"}))["verdict"] == "conflict"


async def test_the_same_id_in_another_account_is_another_order(service):
    assert (await submit(service, ORIGINAL))["verdict"] == "filled"
    other = await submit(service, {**ORIGINAL, "account": "desk-2"})
    assert other["verdict"] == "filled" and other["order"]["account"] == "desk-2"


def wire(**changes) -> dict:
    order, errors = validate_order({**ORIGINAL, **changes})
    assert not errors, errors
    return order


@pytest.mark.parametrize("field", sorted(VARIED) + ["account"])
def test_the_fingerprint_depends_on_every_content_field(field):
    changes = VARIED.get(field, {"account": "desk-2"})
    assert fingerprint(wire(**changes)) != fingerprint(wire())
    assert fingerprint(wire()) == fingerprint(wire())


def test_fields_do_not_run_into_each_other():
    # moving text from one field to the next must not give the same fingerprint
    assert fingerprint(wire(tag="ab")) != fingerprint(wire(time_in_force="day", tag="b"))
    a = wire(account="desk-1", symbol="NIFTY-FUT")
    b = {**a, "account": "desk-1N", "symbol": "IFTY-FUT"}
    assert fingerprint(a) != fingerprint(b)
