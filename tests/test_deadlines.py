"""The shared deadline queue: fires in order, only for live tasks, and stays small."""

from __future__ import annotations

import asyncio
import time

import pytest

from fetcher.deadlines import Deadlines


def test_deadline_cancels_slow_work_and_is_recognised() -> None:
    async def go() -> str:
        clock = Deadlines(0.05)
        deadline = clock.start()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if clock.expired(deadline):
                return "timed out"
            raise
        finally:
            clock.stop(deadline)
        return "finished"

    started = time.monotonic()
    assert asyncio.run(go()) == "timed out"
    assert time.monotonic() - started < 3


def test_stopped_deadline_never_fires() -> None:
    async def go() -> int:
        clock = Deadlines(0.02)
        for _ in range(500):
            deadline = clock.start()
            await asyncio.sleep(0)
            clock.stop(deadline)
        await asyncio.sleep(0.1)  # past every deadline: nothing may be cancelled
        return len(clock._queue)

    assert asyncio.run(go()) < 200  # compacted: about the number of live deadlines


def test_outside_cancel_is_not_taken_for_a_deadline() -> None:
    async def go() -> None:
        clock = Deadlines(10)

        async def work() -> None:
            deadline = clock.start()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                assert not clock.expired(deadline)
                raise
            finally:
                clock.stop(deadline)

        task = asyncio.create_task(work())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


def test_many_deadlines_fire_in_order_with_one_timer() -> None:
    async def go() -> list[int]:
        clock = Deadlines(0.05)
        fired: list[int] = []

        async def work(i: int) -> None:
            deadline = clock.start()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if clock.expired(deadline):
                    fired.append(i)
                    return
                raise
            finally:
                clock.stop(deadline)

        await asyncio.gather(*(work(i) for i in range(100)))
        return fired

    assert asyncio.run(go()) == list(range(100))
