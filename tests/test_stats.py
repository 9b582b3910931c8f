"""The --stats tally: counts by class and kind, latency percentiles from a bounded sample."""

from __future__ import annotations

import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

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


def tally_peaks() -> tuple[int, int]:
    """The traced peak while a tally counts its 20 000th to 30 000th result, and its 20 000th
    to 150 000th."""
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

    return peak(30_000), peak(150_000)


def test_tally_memory_does_not_grow_with_the_run() -> None:
    # In a process of its own: tracemalloc counts every thread's allocations, and threads that
    # earlier tests leave in this one (a Dask client's event loop) once put 260 KB on the peak.
    script = "from test_stats import tally_peaks; print(*tally_peaks())"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 0, done.stderr
    small, large = map(int, done.stdout.split())
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


def test_one_target_is_one_target() -> None:
    tally = Tally(started=0.0)
    tally.count(answered(200, 10), shown=True)
    assert tally.summary(now=1.0).startswith("afetch: 1 target in 1.00 s (1.0/s): 1 answered")


def test_tally_counts_tls_versions_expiring_and_failed_verifications() -> None:
    import datetime

    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from fetcher.tls import TLSInfo

    now = datetime.datetime.now(datetime.UTC)
    ca = trustme.CA()

    def der(days: int) -> bytes:
        leaf = ca.issue_cert("a.example", not_after=now + datetime.timedelta(days=days, hours=1))
        pem = leaf.cert_chain_pems[0].bytes()
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)

    tally = Tally()
    for version, days, verdict in [
        ("TLSv1.3", 200, {"verified": True}),
        ("TLSv1.3", 30, {"verified": True}),
        ("TLSv1.2", 5, {"verified": False, "verify_error": "hostname-mismatch"}),
    ]:
        result = Result("a", parse_target("https://a.example/"), "GET", "raw")
        result.status_code, result.timestamp = 200, now.timestamp()
        result.tls = TLSInfo(version, "X", None, der(days), "a.example", **verdict)  # type: ignore[arg-type]
        tally.count(result)
    tally.count(Result("b", parse_target("b.example"), "GET", "raw", status_code=200))
    lines = tally.summary().splitlines()
    assert (
        "  tls      TLSv1.2 1  TLSv1.3 2;  expiring within 30 days 2;"
        "  not verified: hostname-mismatch 1"
    ) in lines
    assert not any(line.startswith("  tls") for line in Tally().summary().splitlines())
