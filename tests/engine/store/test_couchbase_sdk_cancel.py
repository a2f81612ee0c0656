"""A caller that stops waiting for a Couchbase operation never cancels the SDK's own future.

The SDK completes its futures from its I/O thread with ``call_soon_threadsafe(future.set_exception,
...)``; on a future already cancelled that raises InvalidStateError, which asyncio logs as an
ERROR with a traceback, once per operation under way: during an outage, dozens a second. Here a
stand-in for the SDK completes its future the same way after the caller was cancelled
(tests/engine/test_store_outage.py checks the engine's log on a stopped Couchbase)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from wojak.engine.store._couchbase_kv import _uncancelled


def sdk_operation(loop: asyncio.AbstractEventLoop, release: threading.Event, fail: bool):
    """Like acouchbase: a future completed from another thread once ``release`` is set."""
    future = loop.create_future()

    def io_thread() -> None:
        release.wait(5)
        if fail:
            loop.call_soon_threadsafe(future.set_exception, TimeoutError("kv timeout"))
        else:
            loop.call_soon_threadsafe(future.set_result, "doc")

    threading.Thread(target=io_thread, daemon=True).start()

    async def operation():
        return await future

    return operation(), future


@pytest.mark.parametrize("fail", [False, True])
async def test_a_cancelled_caller_leaves_the_sdk_future_to_complete_and_nothing_is_logged(fail):
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    release = threading.Event()
    operation, future = sdk_operation(loop, release, fail)
    caller = asyncio.ensure_future(_uncancelled(operation))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller  # the caller stops waiting at once
    assert not future.cancelled()
    release.set()
    for _ in range(100):
        if future.done():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert future.done() and not future.cancelled()
    import gc

    gc.collect()  # an unretrieved task exception would be reported here
    await asyncio.sleep(0)
    assert errors == []


async def test_the_result_and_the_failure_reach_a_caller_that_waits():
    loop = asyncio.get_running_loop()
    release = threading.Event()
    release.set()
    operation, _ = sdk_operation(loop, release, False)
    assert await _uncancelled(operation) == "doc"
    operation, _ = sdk_operation(loop, release, True)
    with pytest.raises(TimeoutError, match="kv timeout"):
        await _uncancelled(operation)
