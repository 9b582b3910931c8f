"""The --stats tally: counts by class and kind, latency percentiles from a bounded sample."""

from __future__ import annotations

import random
import tracemalloc

from fetcher.errors import ConnectionRefused, FetchTimeout
from fetcher.models import Result
from fetcher.stats import Reservoir, Tally
from fetcher.targets import parse_target


def answered(status: int, total_ms: float) -> Result:
    result = Result("h", parse_target("h"), "GET", "raw")
    result.status_code, result.timings = status, {"total": total_ms}
    return result


def failed(error: Exception) -> Result:
    result = Result("h", parse_target("h"), "GET", "raw")
    result.error = error  # type: ignore[assignment]
    return result


def test_reservoir_percentiles_are_exact_while_it_holds_everything() -> None:
    reservoir = Reservoir(size=1000)
    values = list(range(1, 101))
    random.shuffle(values)
    for value in values:
        reservoir.add(float(value))
    assert reservoir.percentile(50) == 50 and reservoir.percentile(95) == 95
    assert reservoir.maximum == 100 and reservoir.seen == 100
    assert Reservoir().percentile(50) is None


def test_reservoir_stays_bounded_and_representative() -> None:
    reservoir = Reservoir(size=2000)
    reservoir.rng.seed(7)
    for i in range(200_000):
        reservoir.add(float(i % 1000))
    assert len(reservoir.sample) == 2000 and reservoir.seen == 200_000
    p50, p95 = reservoir.percentile(50), reservoir.percentile(95)
    assert p50 is not None and 450 <= p50 <= 550
    assert p95 is not None and 920 <= p95 <= 980
    assert reservoir.maximum == 999


def test_tally_memory_does_not_grow_with_the_run() -> None:
    results = [answered(200 + i % 300, float(i)) for i in range(1000)]

    def peak(count: int) -> int:
        tally = Tally()
        tracemalloc.start()
        try:
            for i in range(count):
                tally.count(results[i % 1000])
                if i == 20_000:
                    tracemalloc.reset_peak()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(30_000), peak(150_000)
    assert large < small + 64 * 1024, (small, large)


def test_tally_counts_classes_kinds_and_filtered() -> None:
    tally = Tally(started=0.0)
    for result, shown in [
        (answered(200, 10), True),
        (answered(204, 30), True),
        (answered(301, 20), False),
        (answered(404, 40), False),
        (failed(FetchTimeout("no response headers within 1 s", "read")), True),
        (failed(ConnectionRefused("connection refused", "connect")), True),
        (failed(ConnectionRefused("connection refused", "connect")), False),
    ]:
        tally.count(result, shown=shown)
    assert (tally.ok, tally.failed, tally.filtered, tally.done) == (4, 3, 3, 7)
    assert tally.by_class == {"2xx": 2, "3xx": 1, "4xx": 1}
    assert tally.by_kind == {"timeout": 1, "connection-refused": 2}
    assert tally.summary(now=2.0).splitlines() == [
        "afetch: 7 targets in 2.00 s (3.5/s): 4 answered, 3 failed, 3 filtered out",
        "  status   2xx 2  3xx 1  4xx 1",
        "  errors   connection-refused 2  timeout 1",
        "  latency  p50 20.0 ms  p95 40.0 ms  max 40.0 ms",
    ]
