"""The stream scenario: thousands of orders through a whole sidecar, ``kill -9`` mid-stream.

A tenth are published twice (a publisher retry), some carry no client_order_id (derived from
the message's coordinates), and poison messages are mixed in (bad JSON, invalid, conflicts).
After the kill, a second sidecar finishes the stream, and gets SIGTERM once every message is
settled: every valid order executed, every poison message and conflicting resend counted in the
DLQ (``dead_letter_count``, without taking them), nothing left in the queue. Every valid order
reaches the venue exactly once, every poison message is in the DLQ with its reason, the queue
ends empty and nothing stays unacked.

It runs through the contract's hooks (``SidecarContract.test_stream_duplicates_poison_and_kill_9``):
against the in-memory broker on every change, and against each real broker with its
``wojak sidecar <broker>`` process. ``WOJAK_TEST_<SOURCE>_STREAM_ORDERS`` sets the number of
valid orders (the broker's ``stream_orders`` by default; the duplicates, the kill point and the
time limits scale with it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import TYPE_CHECKING

from wojak.engine.protocol import derive_client_order_id
from wojak.sidecars.testing.contract import ACCOUNTS, dumps, eventually, free_port, ledger, order

if TYPE_CHECKING:
    from wojak.sidecars.testing.contract import EngineUnderTest, SidecarContract

DERIVED_EVERY, DUPLICATE_EVERY = 20, 10
REQUEUE_MAX_SECONDS = 2


async def run_stream(broker: SidecarContract, engine: EngineUnderTest) -> None:
    valid = int(os.environ.get(f"WOJAK_TEST_{broker.source_name.upper()}_STREAM_ORDERS", broker.stream_orders))
    kill_at = max(400, valid // 5)  # executions before the kill -9
    bad_json, invalid, conflicts = max(20, valid // 100), max(20, valid // 100), max(10, valid // 200)
    rng = random.Random(20240611)

    messages: list[tuple[bytes, str | None]] = []
    expected: set[str] = set()
    derived: list[tuple[str, bytes]] = []  # their ids are known once published (Kafka: partition and offset)
    for i in range(valid):
        mid = f"mid-{i}"
        if i % DERIVED_EVERY == 0:  # no client_order_id: derived from the message's coordinates
            body = dumps(order(account=f"acct-{i % 8}"))
            derived.append((mid, body))
        else:
            body = dumps(order(f"big-{i}", account=f"acct-{i % 8}"))
            expected.add(f"big-{i}")
        messages.append((body, mid))
        if i % DUPLICATE_EVERY == 3:
            messages.append((body, mid))  # the publisher sent it twice
    poison: set[tuple[str, bytes]] = set()
    for k in range(bad_json):
        body = b'{"client_order_id": "broken-%d", ' % k
        messages.append((body, f"bad-json-{k}"))
        poison.add(("invalid_json", body))
    for k in range(invalid):
        body = dumps(order(f"invalid-{k}", quantity="0"))
        messages.append((body, f"invalid-{k}"))
        poison.add(("invalid", body))
    conflict_ids = {f"cf-{k}" for k in range(conflicts)}
    for coid in sorted(conflict_ids):  # same id, different content: one executes, one conflicts
        messages.append((dumps(order(coid, quantity="1")), f"{coid}-a"))
        messages.append((dumps(order(coid, quantity="2")), f"{coid}-b"))
    expected |= conflict_ids
    rng.shuffle(messages)

    started = time.monotonic()
    await broker.publish_many(messages)
    published = time.monotonic() - started
    assert await broker.pending_count() == len(messages)
    expected |= {derive_client_order_id(broker.source_name, *broker.coordinates_for(mid, body)) for mid, body in derived}

    def env() -> dict[str, str]:
        return {
            "WOJAK_ENGINE_SOCKET": str(engine.socket),
            "WOJAK_LOG_LEVEL": "WARNING",
            "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
            "WOJAK_SIDECAR_HEALTH_PORT": str(free_port()),
            # a requeued message is out of sight for its backoff (a lease deadline, a visibility
            # timeout, held by the sidecar): capped at REQUEUE_MAX_SECONDS, which the end of the
            # stream outlasts where the broker's pending count cannot see it (_until_settled)
            "WOJAK_SIDECAR_BACKOFF_MAX": str(REQUEUE_MAX_SECONDS),
            **broker.stream_env(),
        }

    first = await broker.launch(engine, env(), "stream-1")
    try:
        await eventually(lambda: not first.alive() or engine.execution_count() >= kill_at, 120, f"{kill_at} executions")
        assert first.alive(), first.log_tail()
        await first.kill()  # kill -9 mid-stream
    finally:
        if first.alive():
            await first.kill()
    at_kill = engine.execution_count()
    assert at_kill < len(expected), "the kill landed mid-stream"

    started = time.monotonic()
    second = await broker.launch(engine, env(), "stream-2")
    try:
        try:
            await eventually(
                lambda: engine.execution_count() >= len(expected), 60 + len(messages) / 50, f"{len(expected)} executions"
            )
            finish = time.monotonic() - started  # every order executed (what follows only waits)
            settling = await _until_settled(broker, engine, len(expected), len(poison) + conflicts, 90)
        except AssertionError as exc:  # say how far it got and what the sidecar said
            raise AssertionError(
                f"{exc}: {engine.execution_count()} executed ({at_kill} before the kill), "
                f"{await broker.dead_letter_count()} dead letters, {await broker.pending_count()} pending; "
                f"the second sidecar's log:\n{second.log_tail()}"
            ) from None
        assert await second.terminate(30) == 0, second.log_tail()
    finally:
        if second.alive():
            await second.kill()

    executions = ledger(engine)
    assert set(executions) == expected, "every valid order reached the venue, nothing else did"
    assert set(executions.values()) == {1}, "exactly once, despite duplicates and the kill -9"
    assert await broker.pending_count() == 0, "queue empty and nothing left unacked (the consumers are gone)"

    letters = await broker.dead_letters()
    got = {(dl.reason, dl.body) for dl in letters if dl.reason != "conflict"}
    assert got == poison, "every poison message is in the DLQ with its reason"
    conflicted = {json.loads(dl.body)["client_order_id"] for dl in letters if dl.reason == "conflict"}
    assert conflicted == conflict_ids
    # at-least-once in the DLQ: a kill between the dead letter's publish and the ack dead-letters it twice
    assert len(poison) + conflicts <= len(letters) <= len(poison) + conflicts + broker.stream_in_flight
    duplicates = len(messages) - len(expected) - len(poison) - conflicts
    print(
        f"\n{len(messages)} messages published in {published:.2f}s; {at_kill} executed before kill -9; "
        f"the rest ({len(expected) - at_kill}) in {finish:.2f}s after restart "
        f"({(len(messages) - at_kill) / finish:.0f} msg/s incl. startup); every message settled {settling:.1f}s later "
        f"({len(expected)} executed, {duplicates} duplicates acked, {len(letters)} dead letters"
        f"{f', {len(letters) - len(poison) - conflicts} of them twice' if len(letters) > len(poison) + conflicts else ''})"
    )


async def _until_settled(broker: SidecarContract, engine: EngineUnderTest, executions: int, dead: int, timeout: float) -> float:
    """Until every message sent is settled: each valid order executed, each poison message and
    conflicting resend in the dead-letter queue (counted without taking them: at least ``dead``,
    as a kill -9 may dead-letter one twice), and nothing left in the queue (each duplicate acked).

    A broker whose pending count sees every message not yet settled (``pending_counts_unsettled``)
    ends the stream the moment that holds. Otherwise a duplicate answered ``retry`` is out of
    sight while requeued, and neither executes nor is dead-lettered: it must hold for longer
    than the requeue backoff cap. The seconds it took."""
    quiet = 0.0 if broker.pending_counts_unsettled else REQUEUE_MAX_SECONDS + 1.0
    started = time.monotonic()
    settled_since: float | None = None
    while True:
        now = time.monotonic()
        executed, letters, pending = engine.execution_count(), await broker.dead_letter_count(), await broker.pending_count()
        if executed >= executions and letters >= dead and pending == 0:
            settled_since = now if settled_since is None else settled_since
            if now - settled_since >= quiet:
                return now - started
        else:
            settled_since = None
        if now - started > timeout:
            raise AssertionError(
                f"not every message settled within {timeout}s: {executed} of {executions} orders executed, "
                f"{letters} of at least {dead} dead letters, {pending} pending"
            )
        await asyncio.sleep(0.5)
