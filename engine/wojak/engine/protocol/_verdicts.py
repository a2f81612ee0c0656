"""Verdicts and what a source sidecar does with the broker message for each."""

from __future__ import annotations

import enum


class Verdict(str, enum.Enum):
    # Order outcomes (DESIGN.md, "The wire protocol").
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DENIED = "denied"
    FORBIDDEN = "forbidden"  # the principal may not act for that account (or lacks the scope)
    ESCALATED = "escalated"
    VENUE_ANOMALY = "venue_anomaly"  # the venue's report failed its checks: not booked, escalated
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    INVALID = "invalid"
    RETRY = "retry"
    # Outcomes of queries (ping, tick, get_order, metrics, cancel_order).
    OK = "ok"
    NOT_FOUND = "not_found"


ORDER_VERDICTS = frozenset(
    {
        Verdict.FILLED,
        Verdict.PARTIALLY_FILLED,
        Verdict.ACCEPTED,
        Verdict.REJECTED,
        Verdict.DENIED,
        Verdict.FORBIDDEN,
        Verdict.ESCALATED,
        Verdict.VENUE_ANOMALY,
        Verdict.DUPLICATE,
        Verdict.CONFLICT,
        Verdict.INVALID,
        Verdict.RETRY,
    }
)


class Settlement(str, enum.Enum):
    """What happens to the broker message that carried the request (the verdict table below),
    and how a sidecar settled it (``SourceMessage.settled``)."""

    ACK = "ack"
    ACK_AND_PUBLISH = "ack_and_publish"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"
    # Never a verdict's: a message whose settlements kept failing is taken off the queue.
    GIVE_UP = "give_up"


_SETTLEMENTS = {
    Verdict.FILLED: Settlement.ACK,
    Verdict.PARTIALLY_FILLED: Settlement.ACK,
    Verdict.ACCEPTED: Settlement.ACK,
    Verdict.REJECTED: Settlement.ACK_AND_PUBLISH,
    Verdict.DENIED: Settlement.ACK_AND_PUBLISH,
    Verdict.FORBIDDEN: Settlement.DEAD_LETTER,
    Verdict.ESCALATED: Settlement.ACK,
    Verdict.VENUE_ANOMALY: Settlement.ACK_AND_PUBLISH,
    Verdict.DUPLICATE: Settlement.ACK,
    Verdict.CONFLICT: Settlement.DEAD_LETTER,
    Verdict.INVALID: Settlement.DEAD_LETTER,
    Verdict.RETRY: Settlement.REQUEUE,
    Verdict.OK: Settlement.ACK,
    Verdict.NOT_FOUND: Settlement.DEAD_LETTER,
}


def settlement_for(verdict: Verdict | str) -> Settlement:
    """The verdict -> broker-message table; an unknown verdict requeues (fail closed)."""
    try:
        return _SETTLEMENTS[Verdict(verdict)]
    except ValueError:
        return Settlement.REQUEUE
