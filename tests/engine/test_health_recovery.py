"""After the store fails, the engine runs the store's recovery scan once it answers again.

A failure can cut an outcome short after its commit (the order recorded, its trade and position
update not yet written). A resend finishes it (tests/engine/store/test_couchbase_store.py), but a
client may never send the order again; the scan applies what was cut short either way
(tests/engine/test_store_outage.py shows it end to end on a stopped Couchbase). A fast unit test
of when the scan runs, with stand-ins for the store and the venue."""

from __future__ import annotations

from wojak.engine.health import EngineHealth
from wojak.engine.store import StoreUnavailable


class _Store:
    def __init__(self) -> None:
        self.down = False

    async def probe(self) -> None:
        if self.down:
            raise StoreUnavailable("couchbase: the node went away")


class _Venue:
    async def lookup(self, orders):
        return []


async def test_the_recovery_scan_runs_once_the_store_answers_again_and_again_until_it_succeeds():
    store, scans, failing = _Store(), [], [StoreUnavailable("couchbase: still settling")]

    async def scan() -> None:
        scans.append("scan")
        if failing:
            raise failing.pop()

    health = EngineHealth(store, _Venue(), recover=scan)
    assert await health.probe_once() and scans == []  # nothing failed: nothing to recover
    health.store_failed(StoreUnavailable("couchbase: timeout"))  # an order batch saw the outage
    store.down = True
    assert not await health.probe_once() and scans == []  # still down: not yet
    store.down = False
    assert await health.probe_once() and scans == ["scan"] and health.recovery_owed  # back; the scan failed
    assert await health.probe_once() and scans == ["scan", "scan"] and not health.recovery_owed
    assert await health.probe_once() and scans == ["scan", "scan"]  # done: not again


async def test_a_failed_probe_alone_also_owes_a_recovery_scan():
    store, scans = _Store(), []

    async def scan() -> None:
        scans.append("scan")

    health = EngineHealth(store, _Venue(), recover=scan)
    store.down = True
    await health.probe_once()
    store.down = False
    await health.probe_once()
    assert scans == ["scan"]


async def test_without_a_recovery_scan_the_probe_still_reports_readiness():
    store = _Store()
    health = EngineHealth(store, _Venue())
    store.down = True
    assert not await health.probe_once() and health.describe()["store"]["ok"] is False
    store.down = False
    assert await health.probe_once() and health.describe()["ready"] is True
