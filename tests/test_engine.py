"""The scheduler, driven through a stub backend: bounds, ordering, cancellation, one record each."""

from __future__ import annotations

import asyncio
import functools
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest
from conftest import StubBackend, collect, make_config

from fetcher.engine import START_BURST, Engine
from fetcher.http1 import ResponseHead
from fetcher.models import Result, Trace
from fetcher.stream import fetch_all, pull
from fetcher.targets import Target, parse_target

# Load tests: coverage's tracer made them about 2.5x slower (70 s of the suite's time against
# 25 s without it, 3.11), and every line they run is measured by the engine's other tests.
NO_COVER = pytest.mark.no_cover


def stream(count: int, consumed: list[int]) -> Iterator[str]:
    for i in range(count):
        consumed[0] += 1
        yield f"host{i}.example"


@NO_COVER
def test_stream_of_100k_targets_never_holds_more_than_concurrency_tasks() -> None:
    config = make_config(concurrency=50)
    backend = StubBackend(config, delay=0.001)
    consumed = [0]
    consumed_at_first_result = -1

    async def go() -> int:
        nonlocal consumed_at_first_result
        seen = 0
        async for _ in fetch_all(stream(100_000, consumed), config, backend):
            if seen == 0:
                consumed_at_first_result = consumed[0]
            seen += 1
        return seen

    assert asyncio.run(go()) == 100_000
    assert 1 < backend.max_in_flight <= 50
    # Never one task per input line: one engine task per fetch in flight, plus wait_for's
    # inner task for each, plus the run task and the consumer.
    assert backend.max_fetch_tasks <= 50
    assert backend.max_tasks <= 2 * 50 + 5
    assert consumed_at_first_result < 1000  # input is consumed lazily


def peak_memory(count: int) -> int:
    """Peak traced memory while streaming `count` targets, after a warm-up of 500."""
    config = make_config(concurrency=50)

    async def go() -> int:
        seen = 0
        async for _ in fetch_all(stream(count, [0]), config, StubBackend(config)):
            seen += 1
            if seen == 500:
                tracemalloc.reset_peak()
        return tracemalloc.get_traced_memory()[1]

    tracemalloc.start()
    try:
        return asyncio.run(go())
    finally:
        tracemalloc.stop()


@NO_COVER
def test_memory_does_not_grow_with_the_number_of_targets() -> None:
    small, large = peak_memory(2_000), peak_memory(20_000)
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_exactly_one_record_per_line_with_failures_bugs_and_invalid_input() -> None:
    config = make_config(concurrency=7)
    lines = [f"ok{i}" for i in range(50)] + ["fail1", "boom1", "bad host", "", "# comment"]
    results = collect(lines, config, StubBackend(config, jitter=0.005))
    assert sorted(r.input for r in results) == sorted(lines[:-2])
    kinds = {r.input: r.error.kind for r in results if r.error}
    assert kinds == {
        "fail1": "connection-error",
        "boom1": "internal-error",  # a bug in the backend is ours, not the server's
        "bad host": "invalid-input",
    }
    boom = next(r.error for r in results if r.input == "boom1")
    assert boom is not None and (boom.phase, boom.message) == ("read", "KeyError: 'bug'")


def test_total_deadline_records_the_phase() -> None:
    config = make_config(timeout=0.2)
    [result] = collect(["hang.example"], config, StubBackend(config))
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "read")
    assert result.error.message == "no response headers within 0.2 s"
    assert isinstance(result.error, TimeoutError)


def test_input_order_is_kept_with_random_completion() -> None:
    config = make_config(concurrency=20, order="input")
    lines = [f"ok{i}" for i in range(300)]
    results = collect(lines, config, StubBackend(config, jitter=0.01))
    assert [r.input for r in results] == lines


def test_completion_order_by_default() -> None:
    config = make_config(concurrency=2)

    class Slow(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            if target.host == "slow":
                await asyncio.sleep(0.2)
            return await super().fetch(target, trace)

    results = collect(["slow", "fast"], config, Slow(config))
    assert [r.input for r in results] == ["fast", "slow"]


def test_cancellation_drops_in_flight_fetches_but_finishes_writes() -> None:
    config = make_config(concurrency=4)
    written: list[str] = []
    writing = asyncio.Event

    async def go() -> None:
        started = writing()

        async def slow_sink(result: Result) -> None:
            started.set()
            await asyncio.sleep(0.2)  # a write that is still going when the cancel lands
            written.append(result.input)

        engine = Engine(config, StubBackend(config))
        run = asyncio.create_task(engine.run(["ok1", "hang1", "hang2", "hang3"], slow_sink))
        await started.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(go())
    assert written == ["ok1"]  # the shielded write completed; the hung fetches left no record


def test_failing_sink_stops_the_run_early() -> None:
    config = make_config(concurrency=3)
    backend = StubBackend(config)

    async def broken_sink(result: Result) -> None:
        raise BrokenPipeError

    async def go() -> None:
        engine = Engine(config, backend)
        await engine.run((f"ok{i}" for i in range(100_000)), broken_sink)

    with pytest.raises(BrokenPipeError):
        asyncio.run(go())
    assert backend.calls < 100


def test_leaving_the_iterator_early_cancels_the_rest() -> None:
    config = make_config(concurrency=5)
    backend = StubBackend(config)

    async def go() -> list[str]:
        got = []
        async with aclosing(fetch_all(["ok1"] + ["hang"] * 10, config, backend)) as results:
            async for result in results:
                got.append(result.input)
                break
        return got

    assert asyncio.run(go()) == ["ok1"]
    assert backend.in_flight == 0


def test_input_order_flushes_held_results_when_interrupted() -> None:
    config = make_config(concurrency=4, order="input")
    written: list[str] = []

    async def go() -> None:
        async def sink(result: Result) -> None:
            written.append(result.input)

        engine = Engine(config, StubBackend(config))
        run = asyncio.create_task(engine.run(["hang0", "ok1", "ok2"], sink))
        await asyncio.sleep(0.1)
        assert written == []  # held back behind hang0
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(go())
    assert written == ["ok1", "ok2"]


def test_async_iterable_input() -> None:
    config = make_config()

    async def lines():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield f"ok{i}"

    assert len(collect(lines(), config, StubBackend(config))) == 5


@NO_COVER
def test_ports_expansion_is_streamed_and_bounded() -> None:
    config = make_config(concurrency=20, ports=tuple(range(1, 5001)))
    backend = StubBackend(config)
    consumed = [0]

    async def go() -> tuple[int, int]:
        seen = 0
        first_consumed = -1
        async for _ in fetch_all(stream(10, consumed), config, backend):
            if seen == 0:
                first_consumed = consumed[0]
            seen += 1
        return seen, first_consumed

    seen, first_consumed = asyncio.run(go())
    assert seen == 50_000
    assert first_consumed == 1  # the first line's ports started before the second line was read
    assert backend.max_fetch_tasks <= 20


def test_ports_keep_input_order_and_label_each_port() -> None:
    config = make_config(concurrency=5, order="input", ports=(80, 443, 8080))
    results = collect(["ok1", "bad host", "ok2:81"], config, StubBackend(config, jitter=0.003))
    assert [r.label for r in results] == [
        "ok1:80", "ok1:443", "ok1:8080", "bad host", "ok2:81",
    ]  # fmt: skip
    assert {r.input for r in results} == {"ok1", "bad host", "ok2:81"}


def test_rate_applies_across_concurrent_fetches() -> None:
    config = make_config(concurrency=10, rate=40)
    backend = StubBackend(config)
    started = time.monotonic()
    results = collect([f"ok{i}" for i in range(9)], config, backend)
    assert len(results) == 9
    assert time.monotonic() - started >= 8 / 40 * 0.8


def test_fetches_start_going_while_free_slots_are_still_being_taken() -> None:
    """With a thousand free slots and input that never makes the producer wait, the first
    fetches must not sit until all thousand are started: each would send its request late."""
    started_before_the_first_ran: list[int] = []

    class Watching(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            if not started_before_the_first_ran:
                started_before_the_first_ran.append(engine.in_flight)
            return await super().fetch(target, trace)

    async def lines() -> AsyncIterator[str]:
        for i in range(1000):
            yield f"ok{i}.example"  # never suspends: the whole input is there at once

    async def go() -> list[Result]:
        return [result async for result in pull(functools.partial(engine.run, lines()))]

    config = make_config(concurrency=1000)
    engine = Engine(config, Watching(config))
    assert len(asyncio.run(go())) == 1000
    assert started_before_the_first_ran[0] <= START_BURST


def test_fetch_of_one_target_gives_its_result_and_never_raises() -> None:
    """Engine.fetch, the library's one-target call: through the policy, a failure is a Result."""
    config = make_config()

    async def go() -> tuple[Result, Result]:
        async with Engine(config, StubBackend(config)) as engine:
            ok = await engine.fetch(parse_target("ok1.example"), 3)
            return ok, await engine.fetch(parse_target("fail-1.example"))

    ok, failed = asyncio.run(go())
    assert (ok.status_code, ok.index, ok.failed) == (200, 3, False)
    assert failed.failed and failed.status_code is None
