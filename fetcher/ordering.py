"""--order input: results re-sequenced into input order, in a window of bounded size.

A plain asyncio object with no knowledge of HTTP, like the pacing primitives: the engine puts
each result as it completes and the sink gets them in index order.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable

from .models import Result

# Where results go: a plain function (the CLI's writer) or a coroutine function (a queue).
Sink = Callable[[Result], Awaitable[None] | None]


class InputOrder:
    """Re-sequences results into input order. `reserve()` before starting target i blocks while
    `window` results are held or in flight, so the buffer never outgrows the window."""

    def __init__(self, sink: Sink, window: int) -> None:
        self._sink = sink
        self._window = asyncio.Semaphore(window)
        self._next = 0
        self._held: list[tuple[int, Result]] = []
        self._lock = asyncio.Lock()

    async def reserve(self) -> None:
        await self._window.acquire()

    async def flush(self) -> None:
        """After an interrupted run: write what is held, in order, skipping the gaps left by
        fetches that were cancelled (they were never reported, so --resume fetches them)."""
        async with self._lock:
            while self._held:
                await _call(self._sink, heapq.heappop(self._held)[1])

    async def put(self, result: Result) -> None:
        heapq.heappush(self._held, (result.index, result))
        async with self._lock:
            while self._held and self._held[0][0] == self._next:
                _, ready = heapq.heappop(self._held)
                await _call(self._sink, ready)
                self._next += 1
                self._window.release()


async def _call(sink: Sink, result: Result) -> None:
    pending = sink(result)
    if pending is not None:
        await pending
