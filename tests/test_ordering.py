"""--order input: results re-sequenced by index, within a bounded window."""

from __future__ import annotations

import asyncio

from fetcher.models import Result
from fetcher.ordering import InputOrder


def result(index: int) -> Result:
    return Result(f"line{index}", None, "GET", "stub", index=index)


def test_results_come_out_in_index_order_whatever_order_they_go_in() -> None:
    out: list[int] = []

    async def go() -> None:
        order = InputOrder(lambda r: out.append(r.index), window=10)
        for index in (3, 0, 2, 1, 5, 4):
            await order.reserve()
            await order.put(result(index))

    asyncio.run(go())
    assert out == [0, 1, 2, 3, 4, 5]


def test_the_window_holds_back_the_next_start_until_the_first_is_written() -> None:
    async def go() -> bool:
        order = InputOrder(lambda r: None, window=2)
        await order.reserve()
        await order.reserve()
        third = asyncio.ensure_future(order.reserve())
        await asyncio.sleep(0.01)
        blocked = not third.done()
        await order.put(result(1))  # held: 0 is missing
        await asyncio.sleep(0.01)
        blocked = blocked and not third.done()
        await order.put(result(0))  # writes 0 and 1, freeing two places
        await asyncio.wait_for(third, 1)
        return blocked

    assert asyncio.run(go())


def test_flush_writes_what_is_held_in_order_skipping_the_gaps() -> None:
    out: list[int] = []

    async def go() -> None:
        written: list[int] = []

        async def sink(r: Result) -> None:  # a coroutine sink is awaited
            written.append(r.index)

        order = InputOrder(sink, window=10)
        for index in (4, 2, 0):
            await order.put(result(index))
        await order.flush()
        out.extend(written)

    asyncio.run(go())
    assert out == [0, 2, 4]
