"""The library's way in: `fetch_all`, an async iterator of Results, pulled from a run that
pushes them into a sink.

The engine pushes (a sink per result, so a slow writer throttles the run); a library user
pulls (`async for result in fetch_all(...)`). A queue of one joins the two, so the iterator
holds at most one result its reader has not taken.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing

from .backends import Backend
from .config import Config
from .engine import Engine, Lines
from .models import Result


async def fetch_all(
    lines: Lines, config: Config | None = None, backend: Backend | None = None
) -> AsyncIterator[Result]:
    """Fetch the response heads of `lines` (host, host:port or URL each); yield Results, in
    completion order (or input order with Config(order="input")).

    >>> async for result in fetch_all(["example.com", "https://example.org/"]):
    ...     print(result.label, result.status_code or result.error)
    """
    async with Engine(config or Config(), backend) as engine:
        async with aclosing(pull(functools.partial(engine.run, lines))) as results:
            async for result in results:
                yield result


Run = Callable[[Callable[[Result], Awaitable[None]]], Awaitable[None]]


async def pull(run: Run) -> AsyncGenerator[Result, None]:
    """Yield what `run(sink)` hands its sink, in that order. Leaving the iterator early (with
    contextlib.aclosing()) cancels the run and lets the writes already under way finish; an
    exception from the run is raised to the reader."""
    queue: asyncio.Queue[Result | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            await run(queue.put)
        finally:
            task = asyncio.current_task()
            if task is not None and not task.cancelling():
                await queue.put(None)

    runner = asyncio.create_task(produce())
    try:
        while (result := await queue.get()) is not None:
            yield result
        await runner  # re-raise an input error, if any
    finally:
        runner.cancel()
        # Keep taking results so writes already under way can finish, and the run end.
        while not runner.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({runner, getter}, return_when=asyncio.FIRST_COMPLETED)
            getter.cancel()
            await asyncio.gather(getter, return_exceptions=True)
        if not runner.cancelled():
            runner.exception()
