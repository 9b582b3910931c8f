"""What a run did, counted as results are written, in memory that does not grow with the run:
counts by status class and error kind, and latency percentiles from a fixed-size sample."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from .models import Result
from .tls import Cert

# --stats counts the certificates that expire within this many days (expired ones included):
# the renewal window of the common 90-day certificates, renewed at 30 days left.
EXPIRY_WARNING_DAYS = 30

# Latencies kept for percentiles. A uniform sample of 10 000 puts p95 within about half a
# percentile point of the true value for any run length, in 80 KB however many targets run.
RESERVOIR_SIZE = 10_000


@dataclass(slots=True)
class Reservoir:
    """A uniform random sample of at most `size` values from a stream (Vitter's algorithm R),
    plus the exact count and maximum."""

    size: int = RESERVOIR_SIZE
    seen: int = 0
    maximum: float | None = None
    sample: list[float] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def add(self, value: float) -> None:
        self.seen += 1
        self.maximum = value if self.maximum is None else max(self.maximum, value)
        if len(self.sample) < self.size:
            self.sample.append(value)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.size:
            self.sample[slot] = value

    def merge(self, other: Reservoir) -> None:
        """Take in another stream's sample (a worker's chunk): the result samples both streams
        in proportion to the values each saw, so it stays uniform over their union."""
        self.maximum = _max(self.maximum, other.maximum)
        seen = self.seen + other.seen
        if len(self.sample) + len(other.sample) <= self.size:
            self.sample.extend(other.sample)
        else:
            mine = min(len(self.sample), round(self.size * self.seen / seen))
            theirs = min(len(other.sample), self.size - mine)
            mine = min(len(self.sample), self.size - theirs)
            self._keep_and_take(mine, self.rng.sample(other.sample, theirs))
        self.seen = seen

    def _keep_and_take(self, keep: int, taken: list[float]) -> None:
        """Keep a uniform `keep` of the sample and add `taken` (never fewer than the values
        dropped, as merge() splits): the values dropped are drawn by slot, and the slots freed
        take new values, so the cost is that of the values that change, not of the whole
        sample. Drawing the `keep` kept ones instead cost the parent of --workers about 5 us a
        request (40 chunks of 1 000 into a full sample of 10 000); this, about 0.3 us."""
        sample = self.sample
        slots = self.rng.sample(range(len(sample)), len(sample) - keep)
        for slot, value in zip(slots, taken[: len(slots)], strict=True):
            sample[slot] = value
        sample.extend(taken[len(slots) :])

    def percentile(self, q: float) -> float | None:
        """The nearest-rank q-th percentile (0 < q <= 100) of the sample."""
        if not self.sample:
            return None
        ordered = sorted(self.sample)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]


@dataclass(slots=True)
class Tally:
    """Counts of one run. `filtered` records were fetched and counted but not written."""

    ok: int = 0
    failed: int = 0
    filtered: int = 0
    by_class: dict[str, int] = field(default_factory=dict)  # "2xx" -> count
    by_kind: dict[str, int] = field(default_factory=dict)  # error kind -> count
    by_grade: dict[str, int] = field(default_factory=dict)  # --audit: grade -> count
    latency_ms: Reservoir = field(default_factory=Reservoir)  # of answered targets
    tls_versions: dict[str, int] = field(default_factory=dict)  # "TLSv1.3" -> count
    expiring: int = 0  # records whose certificate expires within EXPIRY_WARNING_DAYS
    unverified: dict[str, int] = field(default_factory=dict)  # verify_error -> count
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def count(self, result: Result, *, shown: bool = True) -> None:
        if result.error is None:
            self.ok += 1
            if result.status_code is not None:
                key = f"{result.status_code // 100}xx"
                self.by_class[key] = self.by_class.get(key, 0) + 1
            total = result.timings.get("total")
            if total is not None:
                self.latency_ms.add(total)
            if result.audit is not None:
                grade = result.audit.grade
                self.by_grade[grade] = self.by_grade.get(grade, 0) + 1
        else:
            self.failed += 1
            self.by_kind[result.error.kind] = self.by_kind.get(result.error.kind, 0) + 1
        if not shown:
            self.filtered += 1
        if result.tls is not None:
            self._count_tls(result)

    def _count_tls(self, result: Result) -> None:
        tls = result.tls
        assert tls is not None
        tls.settle()
        if tls.version:
            self.tls_versions[tls.version] = self.tls_versions.get(tls.version, 0) + 1
        cert = tls.cert
        if isinstance(cert, Cert) and cert.days_left(result.timestamp) <= EXPIRY_WARNING_DAYS:
            self.expiring += 1
        if not tls.verified and tls.verify_error:
            self.unverified[tls.verify_error] = self.unverified.get(tls.verify_error, 0) + 1

    def merge(self, other: Tally) -> None:
        """Add the counts of another tally (a worker's chunk) to this run's; `started` stays."""
        self.ok += other.ok
        self.failed += other.failed
        self.filtered += other.filtered
        self.expiring += other.expiring
        counts = (
            (self.by_class, other.by_class),
            (self.by_kind, other.by_kind),
            (self.by_grade, other.by_grade),
            (self.tls_versions, other.tls_versions),
            (self.unverified, other.unverified),
        )
        for mine, theirs in counts:
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.latency_ms.merge(other.latency_ms)

    def summary(self, now: float | None = None) -> str:
        """The --stats report: a few lines for stderr."""
        wall = (time.monotonic() if now is None else now) - self.started
        rate = self.done / wall if wall > 0 else 0.0
        lines = [
            f"afetch: {self.done} target{'' if self.done == 1 else 's'} in {wall:.2f} s"
            f" ({rate:.1f}/s):"
            f" {self.ok} answered, {self.failed} failed, {self.filtered} filtered out"
        ]
        if self.by_class:
            lines.append("  status   " + _counts(self.by_class))
        if self.by_kind:
            lines.append("  errors   " + _counts(self.by_kind))
        if self.tls_versions or self.unverified or self.expiring:
            tls = [_counts(self.tls_versions)] if self.tls_versions else []
            tls.append(f"expiring within {EXPIRY_WARNING_DAYS} days {self.expiring}")
            if self.unverified:
                tls.append("not verified: " + _counts(self.unverified))
            lines.append("  tls      " + ";  ".join(tls))
        if self.by_grade:
            from .audit import GRADES  # loaded: records were graded

            counts = (
                f"{grade} {self.by_grade[grade]}" for grade in GRADES if grade in self.by_grade
            )
            lines.append("  grades   " + "  ".join(counts))
        latency = self.latency_ms
        if latency.seen:
            p50, p95 = latency.percentile(50), latency.percentile(95)
            lines.append(
                f"  latency  p50 {p50:.1f} ms  p95 {p95:.1f} ms  max {latency.maximum:.1f} ms"
            )
        return "\n".join(lines) + "\n"


def _max(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{key} {counts[key]}" for key in sorted(counts))
