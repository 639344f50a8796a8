"""Long-poll wake-ups within one process: a decision wakes its waiters, a shutdown all."""

import asyncio

from approvals import waiting


def test_wake_reaches_only_that_requests_waiters_and_release_all_reaches_every_one(
    settings, monkeypatch
):
    settings.REDIS_URL = ""  # this process only
    monkeypatch.setattr(waiting, "_closing", waiting.threading.Event())

    async def scenario():
        async with waiting.Waiter(1) as first, waiting.Waiter(2) as second:
            waiting.wake(1)
            woken = (await first.wait(1), await second.wait(0.05))
            waiting.release_all()
            return woken, await second.wait(1)

    (first_woken, second_woken), released = asyncio.run(scenario())

    assert (first_woken, second_woken, released) == (True, False, True)
    # Leaving the block unregisters (other tests' polls may still be waiting in this process).
    assert not {1, 2} & set(waiting._waiters)


def test_after_release_all_new_polls_answer_at_once(settings, monkeypatch):
    settings.REDIS_URL = ""
    monkeypatch.setattr(waiting, "_closing", waiting.threading.Event())

    async def poll():
        async with waiting.Waiter(3) as waiter:
            return await waiter.wait(30)

    waiting.release_all()

    assert asyncio.run(asyncio.wait_for(poll(), timeout=2)) is False
