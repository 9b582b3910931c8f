"""Politeness primitives the engine paces requests with: a run-wide rate and a per-host cap.

Both are plain asyncio objects with no knowledge of HTTP, so they can be tested alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class RateLimiter:
    """A token bucket holding one token, refilled `rate` times a second: request starts are
    spaced 1/rate apart, so no window of one second ever sees more than rate + 1 of them.

    A bucket of one never lets a burst through after an idle spell; for a prober, which is
    either busy or done, that is the behaviour people mean by "--rate 50".
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0  # loop time at which the next token is available

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next)
        self._next = start + self._interval  # reserved before sleeping: callers queue up fairly
        if start > now:
            await asyncio.sleep(start - now)


class PerHostLimiter:
    """At most `limit` holders at once per key (host, port).

    An entry exists only while its key has holders or waiters, so memory follows the requests
    in flight, never the number of distinct hosts a long run has seen.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[Hashable, _Entry] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(asyncio.Semaphore(self._limit))
        entry.users += 1
        try:
            async with entry.semaphore:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    def __len__(self) -> int:
        """Keys currently held or waited for."""
        return len(self._entries)


class _Entry:
    __slots__ = ("semaphore", "users")

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self.semaphore = semaphore
        self.users = 0  # holders plus waiters
