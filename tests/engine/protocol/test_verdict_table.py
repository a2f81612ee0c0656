"""The verdict -> settlement table, row by row (DESIGN.md, "The wire protocol").

Every verdict is written out here with what a broker sidecar does with the message that
carried it. A change to any row must change this table too: a query that found nothing
(``not_found``) is dead-lettered, never acknowledged as if it had been handled.
"""

from __future__ import annotations

import pytest

from wojak.engine.protocol import Settlement, Verdict, settlement_for
from wojak.engine.protocol._verdicts import ORDER_VERDICTS

ACK, PUBLISH, DEAD, REQUEUE = Settlement.ACK, Settlement.ACK_AND_PUBLISH, Settlement.DEAD_LETTER, Settlement.REQUEUE

TABLE = {
    "filled": ACK,
    "partially_filled": ACK,
    "accepted": ACK,
    "rejected": PUBLISH,
    "denied": PUBLISH,
    "forbidden": DEAD,
    "escalated": ACK,
    "venue_anomaly": PUBLISH,
    "duplicate": ACK,
    "conflict": DEAD,
    "invalid": DEAD,
    "retry": REQUEUE,
    "ok": ACK,
    "not_found": DEAD,
}


def test_the_table_has_a_row_for_every_verdict_and_no_other():
    assert {v.value for v in Verdict} == set(TABLE)


@pytest.mark.parametrize("verdict, settlement", sorted(TABLE.items()))
def test_each_verdict_settles_as_the_table_says(verdict, settlement):
    assert settlement_for(verdict) is settlement
    assert settlement_for(Verdict(verdict)) is settlement


def test_not_found_is_dead_lettered_not_acknowledged():
    assert settlement_for(Verdict.NOT_FOUND) is Settlement.DEAD_LETTER
    assert settlement_for("not_found") is not Settlement.ACK


@pytest.mark.parametrize("unknown", ["", "something-new", "FILLED", "filled ", "ack"])
def test_an_unknown_verdict_requeues(unknown):
    assert settlement_for(unknown) is Settlement.REQUEUE


def test_order_verdicts_are_the_table_less_the_query_outcomes():
    assert {v.value for v in ORDER_VERDICTS} == set(TABLE) - {"ok", "not_found"}
