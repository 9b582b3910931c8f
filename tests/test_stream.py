"""Push to pull: a run that hands results to a sink, read as an async iterator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import pytest

from fetcher.models import Result
from fetcher.stream import pull

Sink = Callable[[Result], Awaitable[None]]


def result(index: int) -> Result:
    return Result(f"line{index}", None, "GET", "stub", index=index)


def test_pull_yields_what_the_run_hands_its_sink_in_that_order() -> None:
    async def run(sink: Sink) -> None:
        for index in range(5):
            await sink(result(index))

    async def go() -> list[int]:
        return [r.index async for r in pull(run)]

    assert asyncio.run(go()) == [0, 1, 2, 3, 4]


def test_leaving_early_cancels_the_run_after_the_write_under_way() -> None:
    state = {"cancelled": False, "handed": 0}

    async def run(sink: Sink) -> None:
        try:
            for index in range(1000):
                await sink(result(index))
                state["handed"] += 1
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def go() -> list[int]:
        seen = []
        async with aclosing(pull(run)) as results:
            async for r in results:
                seen.append(r.index)
                if len(seen) == 3:
                    break
        return seen

    assert asyncio.run(go()) == [0, 1, 2]
    assert state["cancelled"] and state["handed"] < 10


def test_an_error_of_the_run_reaches_the_reader() -> None:
    async def run(sink: Sink) -> None:
        await sink(result(0))
        raise OSError("input file vanished")

    async def go() -> list[int]:
        return [r.index async for r in pull(run)]

    with pytest.raises(OSError, match="vanished"):
        asyncio.run(go())
