"""Input lines -> jobs: the targets one line makes (--ports), less what --resume recorded.

The engine schedules the jobs and the progress line counts them: both go through `Jobs`, so
the total the progress line shows is the number of records the run writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from .config import Config
from .errors import InvalidInput
from .resume import Recorded
from .targets import Target, parse_target


@dataclass(frozen=True, slots=True)
class Job:
    """One record to make: a target to fetch, or the reason its line is no target."""

    line: str  # the input line, as read
    target: Target | InvalidInput
    expanded: bool = False  # one of several targets --ports made of one bare host


class Jobs:
    """What each input line becomes under one Config (and, with --resume, one Recorded)."""

    def __init__(self, config: Config, recorded: Recorded | None = None) -> None:
        self._ports = config.ports
        self._recorded = recorded
        # Targets without a scheme are tried with https first under --scheme auto.
        scheme = config.bare_scheme
        self._scheme = "https" if scheme == "auto" else scheme

    def of(self, line: str) -> Iterator[Job]:
        """The jobs of one non-blank, non-comment line: a generator, so a long port list is
        never materialised."""
        recorded = self._recorded
        try:
            target = parse_target(line, self._scheme)
        except InvalidInput as exc:
            if recorded is None or not recorded.take(line.strip()):
                yield Job(line, exc)
            return
        if not self._expands(target):
            if recorded is None or not recorded.take(target.input):
                yield Job(line, target)
            return
        for port in self._ports:
            if recorded is None or not recorded.take(target.input, port):
                yield Job(line, replace(target, port=port, explicit_port=True), expanded=True)

    def count(self, line: str) -> int:
        """How many records one line makes, without --resume's skipping (the progress line's
        total is counted on a thread while the run takes from `recorded`)."""
        if not self._ports:
            return 1
        try:
            target = parse_target(line, self._scheme)
        except InvalidInput:
            return 1
        return len(self._ports) if self._expands(target) else 1

    def _expands(self, target: Target) -> bool:
        """A bare host becomes one target per --ports port; a line that names its scheme or
        port does not."""
        return bool(self._ports) and not (target.explicit_port or target.explicit_scheme)
