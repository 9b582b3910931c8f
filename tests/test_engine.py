"""The scheduler, driven through a stub backend: bounds, ordering, cancellation, one record each."""

from __future__ import annotations

import asyncio
import functools
import random
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest
from conftest import make_config

from fetcher.backends.base import Backend
from fetcher.config import Config
from fetcher.engine import START_BURST, Engine
from fetcher.errors import ConnectError, ConnectionRefused, TLSError
from fetcher.http1 import ResponseHead
from fetcher.models import Result, Trace
from fetcher.stream import fetch_all, pull
from fetcher.targets import Target, parse_target


class StubBackend(Backend):
    """Behaviour by host name: okN answers, fail-* fails, hang-* never answers, boom-* has a bug."""

    name = "stub"

    def __init__(self, config: Config, delay: float = 0.0, jitter: float = 0.0) -> None:
        super().__init__(config)
        self.delay, self.jitter = delay, jitter
        self.in_flight = self.max_in_flight = self.calls = 0
        self.max_tasks = self.max_fetch_tasks = 0

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.calls % 97 == 0:
            tasks = asyncio.all_tasks()
            fetches = sum(1 for t in tasks if t.get_coro().__qualname__ == "Engine._one")  # type: ignore[union-attr]
            self.max_fetch_tasks = max(self.max_fetch_tasks, fetches)
            self.max_tasks = max(self.max_tasks, len(tasks))
        try:
            trace.phase = "read"
            if target.host.startswith("hang"):
                await asyncio.sleep(3600)
            if self.delay or self.jitter:
                await asyncio.sleep(self.delay + random.random() * self.jitter)
            else:
                await asyncio.sleep(0)
            if target.host.startswith("fail"):
                raise ConnectError("stub failure", "connect")
            if target.host.startswith("boom"):
                raise KeyError("bug")
            return ResponseHead("1.1", 200, "OK", [("X-Host", target.host)])
        finally:
            self.in_flight -= 1


def collect(lines: object, config: Config, backend: Backend) -> list[Result]:
    async def go() -> list[Result]:
        return [r async for r in fetch_all(lines, config, backend)]  # type: ignore[arg-type]

    return asyncio.run(go())


def stream(count: int, consumed: list[int]) -> Iterator[str]:
    for i in range(count):
        consumed[0] += 1
        yield f"host{i}.example"


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


def test_a_bug_outside_the_backend_call_costs_one_record_not_the_run() -> None:
    class BugShaped(StubBackend):
        """Answers bug-* with a redirect whose Location it forgot to decode."""

        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            if target.host.startswith("bug"):
                return ResponseHead("1.1", 302, "Found", [("Location", b"/next")])  # type: ignore[list-item]
            return await super().fetch(target, trace)

    config = make_config(follow_redirects=True, concurrency=2)
    lines = ["bug1.example", "ok1", "bug2.example", "ok2"]
    results = collect(lines, config, BugShaped(config))
    assert sorted(r.input for r in results) == sorted(lines)
    errors = {r.input: r.error and r.error.as_dict() for r in results}
    assert errors["ok1"] is None and errors["ok2"] is None
    assert errors["bug1.example"] == {
        "kind": "internal-error",
        "phase": None,
        "message": "TypeError: Cannot mix str and non-str arguments",
    }


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


# --- probe features through the stub: what the engine asks the backend for ---------------


class Recording(StubBackend):
    """Records every target it is asked for; hosts named refuse-* fail like a closed port."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.asked: list[str] = []

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        self.asked.append(target.url)
        if target.host.startswith("refuse") and target.scheme == "https":
            raise ConnectionRefused("connection refused", "connect")
        return await super().fetch(target, trace)


def test_auto_tries_https_443_then_http_80_for_a_bare_host() -> None:
    config = make_config(scheme="auto")
    backend = Recording(config)
    [result] = collect(["refuse.example"], config, backend)
    assert backend.asked == ["https://refuse.example/", "http://refuse.example/"]
    assert result.to_record()["url"] == "http://refuse.example/" and result.status_code == 200
    assert result.target is not None and result.target.port == 80


def test_auto_keeps_a_given_port_and_stops_at_an_https_answer() -> None:
    config = make_config(scheme="auto")
    backend = Recording(config)
    results = collect(["refuse.example:8080", "ok.example"], config, backend)
    assert sorted(backend.asked) == sorted(
        ["https://refuse.example:8080/", "http://refuse.example:8080/", "https://ok.example/"]
    )
    assert {r.to_record()["url"] for r in results} == {
        "http://refuse.example:8080/",
        "https://ok.example/",
    }


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


def test_retries_back_off_then_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from fetcher import policy as engine_module

    waits: list[float] = []
    real_backoff = engine_module.backoff

    def recorded(retry: int) -> float:
        waits.append(real_backoff(retry))
        return 0.0  # do not really wait

    monkeypatch.setattr(engine_module, "backoff", recorded)
    config = make_config(retries=3)

    class Failing(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            self.calls += 1
            raise ConnectError("stub failure", "connect")

    backend = Failing(config)
    engine = Engine(config, backend)
    result = asyncio.run(engine.fetch(parse_target("fail.example")))
    assert result.error is not None and result.error.kind == "connection-error"
    assert backend.calls == 4 and len(waits) == 3
    for retry, wait in enumerate(waits):
        full = min(engine_module.RETRY_CAP, engine_module.RETRY_BASE * 2**retry)
        assert full / 2 <= wait <= full


def test_backoff_grows_and_is_capped() -> None:
    from fetcher.policy import RETRY_BASE, RETRY_CAP, backoff

    assert RETRY_BASE / 2 <= backoff(0) <= RETRY_BASE
    assert 4 * RETRY_BASE / 2 <= backoff(2) <= 4 * RETRY_BASE
    assert RETRY_CAP / 2 <= backoff(50) <= RETRY_CAP


def test_other_errors_are_not_retried() -> None:
    config = make_config(retries=3)

    class Tls(StubBackend):
        async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
            self.calls += 1
            raise TLSError("bad certificate", "tls")

    backend = Tls(config)
    result = asyncio.run(Engine(config, backend).fetch(parse_target("x.example")))
    assert result.error is not None and result.error.kind == "tls-error"
    assert backend.calls == 1


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
