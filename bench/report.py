"""Turn measured runs into summaries, Markdown tables and target checks.

Only correct runs (clean exit, every target answered with a 200) count towards a median; a client
with no correct run shows "—" and its failures in the last column. Ratios are taken between
medians of the same run of the benchmark: absolute numbers drift, ratios do not.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from clients import Tally
from measure import ChildRun

# Readings within 10% of the launcher's floor (see launcher.py) are upper bounds, not values.
RSS_FLOOR_SLACK = 1.10


@dataclass(frozen=True)
class Measurement:
    """One run of one client on one workload."""

    client: str
    expected: int
    child: ChildRun
    tally: Tally

    @property
    def correct(self) -> bool:
        return (
            self.child.clean_exit
            and self.tally.records == self.expected
            and self.tally.ok == self.expected
        )

    @property
    def rate(self) -> float:
        return self.expected / self.child.wall_s if self.child.wall_s > 0 else 0.0

    def problem(self) -> str:
        """Why this run is not correct, in a few words ("" when it is)."""
        if self.child.timed_out:
            return "killed at timeout"
        problems = []
        if self.child.returncode != 0:
            problems.append(f"exit {self.child.returncode}")
        if self.tally.records != self.expected or self.tally.ok != self.expected:
            problems.append(f"{self.tally.ok} ok / {self.tally.records} records")
            if self.tally.note:
                problems.append(self.tally.note)
        return ", ".join(problems)

    def as_dict(self) -> dict[str, object]:
        return {
            "wall_s": round(self.child.wall_s, 4),
            "cpu_s": round(self.child.cpu_s, 4),
            "requests_per_s": round(self.rate, 1),
            "peak_rss_mb": round(self.child.peak_rss_mb, 1),
            "returncode": self.child.returncode,
            "timed_out": self.child.timed_out,
            "records": self.tally.records,
            "ok": self.tally.ok,
            "note": self.tally.note,
            "correct": self.correct,
            "stderr_tail": "" if self.correct else self.child.stderr_tail[-500:],
        }


@dataclass
class Summary:
    """All runs of one client in one case."""

    client: str
    expected: int
    runs: list[Measurement] = field(default_factory=list)

    @property
    def good(self) -> list[Measurement]:
        return [run for run in self.runs if run.correct]

    def median_rate(self) -> float | None:
        good = self.good
        return statistics.median(run.rate for run in good) if good else None

    def median_cpu_us(self) -> float | None:
        """Median CPU microseconds (user + system) the client spent per request."""
        good = [run for run in self.good if run.child.cpu_s > 0]
        return (
            statistics.median(run.child.cpu_s / run.expected * 1e6 for run in good)
            if good
            else None
        )

    def median_wall(self) -> float | None:
        good = self.good
        return statistics.median(run.child.wall_s for run in good) if good else None

    def peak_rss_mb(self) -> float:
        return max((run.child.peak_rss_mb for run in self.runs), default=0.0)

    def correctness(self) -> str:
        bad = [run for run in self.runs if not run.correct]
        if not bad:
            return f"{self.expected}/{self.expected} ok in {len(self.runs)}/{len(self.runs)} runs"
        problems = sorted({run.problem() for run in bad})
        return f"FAIL {len(bad)}/{len(self.runs)} runs: " + "; ".join(problems)

    def as_dict(self) -> dict[str, object]:
        return {
            "client": self.client,
            "expected": self.expected,
            "median_requests_per_s": _round(self.median_rate(), 1),
            "median_wall_s": _round(self.median_wall(), 4),
            "median_cpu_us_per_request": _round(self.median_cpu_us(), 1),
            "peak_rss_mb": round(self.peak_rss_mb(), 1),
            "correctness": self.correctness(),
            "runs": [run.as_dict() for run in self.runs],
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def fmt_rss(mb: float, floor_mb: float, digits: int = 0) -> str:
    """Peak RSS in MB; a reading at the launcher's floor only says "no more than this"."""
    if mb <= 0:
        return "—"  # no run got far enough to report one
    if mb <= floor_mb * RSS_FLOOR_SLACK:
        return f"<= {mb:.{digits}f}"
    return f"{mb:.{digits}f}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    numeric = [i > 0 and i < len(header) - 1 for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 1) + ":" if right else "-" * (width + 2)
        for width, right in zip(widths, numeric, strict=True)
    )
    return "\n".join([line(header), rule + "|", *(line(row) for row in rows)])


def throughput_table(summaries: Sequence[Summary], curl: str, ab: str, rss_floor_mb: float) -> str:
    by_name = {summary.client: summary for summary in summaries}
    curl_rate = by_name[curl].median_rate() if curl in by_name else None
    ab_rate = by_name[ab].median_rate() if ab in by_name else None
    rows = []
    for summary in summaries:
        rates = [run.rate for run in summary.good]
        spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if rates else "—"
        rows.append(
            [
                summary.client,
                _fmt(summary.median_rate(), ",.0f"),
                spread,
                fmt_rss(summary.peak_rss_mb(), rss_floor_mb),
                _fmt(ratio(summary.median_rate(), curl_rate), ".2f", "x"),
                _fmt(ratio(summary.median_rate(), ab_rate), ".2f", "x"),
                summary.correctness(),
            ]
        )
    header = ["client", "req/s (median)", "min–max", "peak RSS MB", "vs curl", "vs ab", "correct"]
    return markdown(header, rows)


def latency_table(
    summaries: Sequence[Summary], delay_s: float, concurrency: int, ab: str, rss_floor_mb: float
) -> str:
    """Wall times against the delayed server; "avg in flight" = targets x delay / wall."""
    by_name = {summary.client: summary for summary in summaries}
    ab_wall = by_name[ab].median_wall() if ab in by_name else None
    rows = []
    for summary in summaries:
        ideal_s = summary.expected / concurrency * delay_s
        wall = summary.median_wall()
        walls = [run.child.wall_s for run in summary.good]
        spread = f"{min(walls):.2f}–{max(walls):.2f}" if walls else "—"
        in_flight = None if not wall else summary.expected * delay_s / wall
        rows.append(
            [
                summary.client,
                _fmt(wall, ".2f"),
                spread,
                _fmt(in_flight, ".0f"),
                fmt_rss(summary.peak_rss_mb(), rss_floor_mb),
                _fmt(ratio(wall, ideal_s), ".2f", "x"),
                _fmt(ratio(wall, ab_wall), ".2f", "x"),
                summary.correctness(),
            ]
        )
    header = [
        "client",
        "wall s (median)",
        "min–max",
        "avg in flight",
        "peak RSS MB",
        "vs ideal",
        "vs ab",
        "correct",
    ]
    return markdown(header, rows)


@dataclass(frozen=True)
class Check:
    """One target from the issue, and whether this run met it."""

    name: str
    target: str
    measured: str
    passed: bool | None  # None: could not be measured in this run

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "measured": self.measured,
            "passed": self.passed,
        }


def checks_table(checks: Sequence[Check]) -> str:
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}
    rows = [[check.name, check.target, check.measured, verdict[check.passed]] for check in checks]
    return markdown(["target", "wanted", "measured", "result"], rows)


def ratio_check(
    name: str, target: str, value: float | None, at_least: float, rounds: Sequence[float] = ()
) -> Check:
    """`value` (a ratio of medians) against `at_least`; `rounds`, the same ratio round by round
    (paired_ratios), shown beside it but not judged: the target is the issue's, on medians."""
    if value is None:
        return Check(name, target, "—", None)
    return Check(name, target, f"{value:.2f}x{fmt_rounds(rounds)}", value >= at_least)


def request_rate(run: Measurement) -> float:
    return run.rate


def cpu_per_request(run: Measurement) -> float:
    return run.child.cpu_s / run.expected if run.expected else 0.0


def paired_ratios(
    numerator: Summary,
    denominator: Summary,
    measure: Callable[[Measurement], float] = request_rate,
) -> list[float]:
    """Round by round, one client's `measure` (its rate, or cpu_per_request) over another's,
    for the rounds both ran correctly.

    Clients of a round run one after the other within a few seconds, so a round's ratio
    compares them under about the same load from whatever else shares the machine. The medians
    of two clients come from different rounds; on a shared machine whose speed moved by a third
    from one run to the next, the spread of these ratios says how far a ratio of medians can be
    trusted.
    """
    return [
        measure(mine) / measure(theirs)
        for mine, theirs in zip(numerator.runs, denominator.runs, strict=False)
        if mine.correct and theirs.correct and measure(mine) > 0 and measure(theirs) > 0
    ]


def fmt_rounds(ratios: Sequence[float]) -> str:
    """ " (rounds: median 0.99x, 0.74-1.14x)", or nothing without two rounds to compare."""
    if len(ratios) < 2:
        return ""
    low, high = min(ratios), max(ratios)
    return f" (rounds: median {statistics.median(ratios):.2f}x, {low:.2f}-{high:.2f}x)"
