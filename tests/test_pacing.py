"""The pacing primitives alone: RateLimiter's spacing of starts.

Spacing is measured with the loop's clock at the moment acquire() returns, which is what the
limiter promises; a loaded machine can only make gaps longer, so the lower bounds hold under
any load, and the upper bounds are wide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from fetcher.pacing import TIMER_TICK, RateLimiter

# How much shorter than 1/R a gap may be: the tick of a late start the limiter lets the next
# one make up, plus float rounding. Any more is a broken promise.
EPS = TIMER_TICK + 1e-6
# uvloop's clock counts whole milliseconds, and it rounds a sleep to the nearest one.
EPS_UVLOOP = EPS + 0.001


def loops() -> list[object]:
    """The default loop, and uvloop (the one afetch runs on) where it is installed."""
    params: list[object] = [pytest.param(asyncio.new_event_loop, EPS, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # a dependency everywhere but on Windows
        return params
    return [*params, pytest.param(uvloop.new_event_loop, EPS_UVLOOP, id="uvloop")]


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in zip(starts, starts[1:], strict=False)]


async def starts_of(limiter: RateLimiter, callers: int) -> list[float]:
    """The loop time at which each of `callers` concurrent acquire() calls returned, in order."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(loop.time())

    await asyncio.gather(*(one() for _ in range(callers)))
    return starts


@pytest.mark.parametrize(("new_loop", "eps"), loops())
def test_starts_are_spaced_one_interval_apart(
    new_loop: Callable[[], asyncio.AbstractEventLoop], eps: float
) -> None:
    async def go() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        starts = await starts_of(RateLimiter(50), 11)
        return starts, starts[-1] - began

    with asyncio.Runner(loop_factory=new_loop) as runner:
        starts, elapsed = runner.run(go())
    assert len(starts) == 11
    assert min(gaps(starts)) >= 1 / 50 - eps, gaps(starts)
    assert 10 * (1 / 50 - eps) <= elapsed < 5  # 0.2 s asked for; wide margin for a loaded box


def test_a_late_start_is_followed_by_a_full_interval() -> None:
    """The loop is blocked when the second start is due, so that start is late: the third must
    still wait a whole interval after it, not catch up with a fixed schedule."""

    async def go() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(20)  # 50 ms apart
        await limiter.acquire()
        first = loop.time()
        # Hold the loop from 30 ms to 80 ms after the first start: the second start, due at
        # 50 ms, comes at 80 ms at the earliest.
        loop.call_later(0.03, time.sleep, 0.05)
        return [first, *await starts_of(limiter, 2)]

    starts = asyncio.run(go())
    assert starts[1] - starts[0] >= 0.08 - EPS  # the blocked loop really made it late
    assert min(gaps(starts)) >= 1 / 20 - EPS, gaps(starts)


def test_an_idle_limiter_lets_the_next_start_go_at_once() -> None:
    async def go() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(4)  # 250 ms apart
        began = loop.time()
        await limiter.acquire()
        first = loop.time() - began
        await asyncio.sleep(0.3)
        began = loop.time()
        await limiter.acquire()
        return first, loop.time() - began

    first, after_idle = asyncio.run(go())
    # Neither waits for a token (0.25 s); an idle spell stores no burst either (next test).
    assert first < 0.2 and after_idle < 0.2


def test_an_idle_spell_stores_no_burst() -> None:
    async def go() -> list[float]:
        limiter = RateLimiter(50)
        await limiter.acquire()
        await asyncio.sleep(0.1)  # five intervals idle
        return await starts_of(limiter, 4)

    starts = asyncio.run(go())
    assert min(gaps(starts)) >= 1 / 50 - EPS, gaps(starts)


def test_a_cancelled_waiter_leaves_the_limiter_working() -> None:
    async def go() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(20)
        await limiter.acquire()
        starts = [loop.time()]
        waiting = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        starts += await asyncio.wait_for(starts_of(limiter, 2), 5)
        return starts

    starts = asyncio.run(go())
    assert min(gaps(starts)) >= 1 / 20 - EPS, gaps(starts)


# --- PerHostLimiter ----------------------------------------------------------------------


def test_per_host_limiter_forgets_idle_hosts() -> None:
    from fetcher.pacing import PerHostLimiter

    limiter = PerHostLimiter(2)
    peak: dict[str, int] = {}
    now: dict[str, int] = {}
    sizes: list[int] = []

    async def one(host: str) -> None:
        async with limiter.hold((host, 80)):
            now[host] = now.get(host, 0) + 1
            peak[host] = max(peak.get(host, 0), now[host])
            sizes.append(len(limiter))
            await asyncio.sleep(0.001)
            now[host] -= 1

    async def go() -> None:
        await asyncio.gather(*(one(f"h{i % 50}") for i in range(1000)))

    asyncio.run(go())
    assert max(peak.values()) == 2
    assert max(sizes) <= 50
    assert len(limiter) == 0  # nothing kept once every host is idle


def test_per_host_limiter_keeps_no_entry_after_cancellation() -> None:
    from fetcher.pacing import PerHostLimiter

    limiter = PerHostLimiter(1)

    async def go() -> None:
        async def hold() -> None:
            async with limiter.hold("h"):
                await asyncio.sleep(10)

        tasks = [asyncio.create_task(hold()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert len(limiter) == 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())
    assert len(limiter) == 0
