"""`actions.uncut`: a sandbox call whose caller is cancelled (the agent stopping) still runs to
its end before the cancellation reaches the caller; a call that outlives the grace is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from kybern.agent import actions


async def test_cancelled_caller_waits_for_the_call_to_finish() -> None:
    release, started, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def call() -> str:
        started.set()
        await release.wait()
        done.set()
        return "sandbox"

    caller = asyncio.create_task(actions.uncut(call()))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0)  # let the cancellation arrive: the call must still be running
    assert not caller.done() and not done.is_set()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done.is_set()


async def test_call_beyond_the_grace_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "SANDBOX_CALL_GRACE", 0.01)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def call() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caller = asyncio.create_task(actions.uncut(call()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(cancelled.wait(), 5.0)


async def test_result_when_not_cancelled() -> None:
    async def call() -> int:
        return 7

    assert await actions.uncut(call()) == 7
