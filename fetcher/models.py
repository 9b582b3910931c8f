"""Result: the one record every backend's fetch becomes and every writer takes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import FetchError, Phase
from .records import CSV_COLUMNS, CSV_HEADERS, TIMING_PHASES
from .targets import Target


@dataclass(slots=True)
class Trace:
    """What a fetch learned along the way, kept even when it fails or is cut off by a deadline.

    The backend fills it in as it goes; the engine reads it to build the Result, so a timeout
    still reports the phase it happened in, the peer address and the timings so far.
    """

    started: float = field(default_factory=time.perf_counter)
    phase: Phase = "dns"
    host_ip: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def restart(self) -> None:
        """Start the clock again, after waiting for one-time set-up (the CA store, the
        resolver): that wait is no phase of this fetch, nor any part of its total."""
        self.started = time.perf_counter()

    def mark(self, name: str, since: float) -> float:
        """Record the milliseconds from `since` to now as timing `name`; return now."""
        now = time.perf_counter()
        self.timings[name] = round((now - since) * 1000, 3)
        return now


@dataclass(frozen=True, slots=True)
class Redirect:
    """One followed redirect: the URL asked, the status it answered with, its Location as sent."""

    url: str
    status_code: int
    location: str

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "status_code": self.status_code, "location": self.location}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One scheme --scheme auto tried: its URL, and the error it ended in (None: it answered)."""

    url: str
    error: FetchError | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "error": self.error.as_dict() if self.error else None}


@dataclass(slots=True)
class Result:
    """The outcome of one input line: a response head, or an error, never both."""

    input: str
    target: Target | None
    method: str
    backend: str
    host_ip: str | None = None
    status_code: int | None = None
    reason: str | None = None
    http_version: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: FetchError | None = None
    timestamp: float = field(default_factory=time.time)
    index: int = -1  # position in the input, for --order input
    redirects: list[Redirect] = field(default_factory=list)
    final_target: Target | None = None  # what the last request went to (after redirects)
    expanded: bool = False  # one of several targets made from one line by --ports
    # --scheme auto: each scheme tried, in order (of the last try, with --retries); else empty.
    attempts: Sequence[Attempt] = ()

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def label(self) -> str:
        """How text output names this target: the input line as given, or host:port[path]
        when --ports made several targets of it."""
        target = self.target
        if not self.expanded or target is None:
            return self.input
        return target.host_port + (target.path if target.path != "/" else "")

    @property
    def final_url(self) -> str | None:
        target = self.final_target or self.target
        return target.url if target else None

    def headers_by_name(self) -> dict[str, list[str]]:
        """Lower-cased name -> values in received order, duplicates (Set-Cookie) kept."""
        grouped: dict[str, list[str]] = {}
        for name, value in self.headers:
            grouped.setdefault(name.lower(), []).append(value)
        return grouped

    def to_record(self) -> dict[str, Any]:
        """The JSON Lines record. Field names and order are a stable, documented interface."""
        target = self.target
        url = target.url if target else None
        final = self.final_target
        return {
            "input": self.input,
            "url": url,
            "scheme": target.scheme if target else None,
            "host": target.host if target else None,
            "port": target.port if target else None,
            "path": target.path if target else None,
            "host_ip": self.host_ip,
            "method": self.method,
            "status_code": self.status_code,
            "reason": self.reason,
            "http_version": self.http_version,
            "headers": self.headers_by_name(),
            "timings_ms": {phase: self.timings.get(phase) for phase in TIMING_PHASES},
            "failed": self.failed,
            "error": self.error.as_dict() if self.error else None,
            "timestamp": rfc3339(self.timestamp),
            "backend": self.backend,
            "redirects": [redirect.as_dict() for redirect in self.redirects],
            # Without redirects or a scheme fallback the final target is the target: its URL
            # is already formatted (this runs once per record, on the hot path).
            "final_url": url if final is None or final is target else final.url,
            "attempts": [attempt.as_dict() for attempt in self.attempts] if self.attempts else [],
        }

    def to_row(self) -> dict[str, Any]:
        """The CSV row: CSV_COLUMNS -> a scalar (None for an empty cell)."""
        record = self.to_record()
        row = {name: record[name] for name in CSV_COLUMNS if name in record}
        headers = record["headers"]
        for name in CSV_HEADERS:
            values = headers.get(name.replace("_", "-"))
            row[name] = values[0] if values else None
        row["redirect_count"] = len(self.redirects)
        for phase, value in record["timings_ms"].items():
            row[f"{phase}_ms"] = value
        error = record["error"] or {}
        for part in ("kind", "phase", "message"):
            row[f"error_{part}"] = error.get(part)
        return {name: row[name] for name in CSV_COLUMNS}


def rfc3339(epoch: float) -> str:
    """UTC timestamp with milliseconds, e.g. 2026-11-25T17:45:04.123Z."""
    second = int(epoch)
    micro = round((epoch - second) * 1_000_000)  # rounded as datetime does, then truncated
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    if second != _second[0]:  # thousands of records share a second: format it once
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{micro // 1000:03d}Z"


_second: list[Any] = [None, ""]
