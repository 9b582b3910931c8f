"""Exit statuses: how a run ends, as the shell sees it."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # every target answered with an HTTP status
    FAILURES = 1  # at least one target failed (error record)
    USAGE = 2  # bad option, bad config file: one line on stderr
    UNAVAILABLE = 69  # the workers failed the run (sysexits EX_UNAVAILABLE): one line
    INTERNAL = 70  # a bug in afetch (sysexits EX_SOFTWARE): one line, AFETCH_DEBUG=1 for more
    OUTPUT = 74  # output cannot be written or input read (sysexits EX_IOERR): one line
    INTERRUPTED = 130  # SIGINT (Ctrl-C), 128 + 2
    TERMINATED = 143  # SIGTERM, 128 + 15
