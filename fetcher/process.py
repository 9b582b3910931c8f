"""The afetch process: its entry point, and what SIGINT and SIGTERM do at every moment of it.

The console script and `python -m fetcher` start here, and handle both signals before click,
asyncio or the engine are imported (about 0.16 s of CPU time, during which Python's own
SIGINT handler would raise KeyboardInterrupt in the middle of some import, and SIGTERM would
kill the process outright). From then on a signal ends the process in 130 (SIGINT) or 143
(SIGTERM), never in a traceback:

    before a run     it exits at once: nothing is written yet
    during a run     the first stops it gracefully (runner.py); a second exits at once
    after the run    the first is noted, and decides the status once the output is flushed;
                     a second exits at once (a flush stuck on a stalled pipe, say)
    at the end       both are ignored: the status is decided and the output is out

A signal that was ignored when the process started (nohup, a shell's background job) stays
ignored. Only the first moments of the interpreter itself, before this module runs, are
Python's (see README, Exit status).
"""

from __future__ import annotations

import os
import signal
import sys

from .status import ExitCode

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see fetcher/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeAlias

    Handler: TypeAlias = Callable[[int, Any], Any] | int | None

# Each signal's exit status: 128 + its number, as a shell reports a process it ended.
STATUS: dict[int, ExitCode] = {
    signal.SIGINT: ExitCode.INTERRUPTED,
    signal.SIGTERM: ExitCode.TERMINATED,
}
# The disposition each has when nobody took it over; any other was chosen by someone and kept.
_UNHANDLED = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


class Signals:
    """The process's SIGINT and SIGTERM: one instance, SIGNALS. A run sets `stop` while its
    loop runs and `run_begun` for the rest of the process; `received` is the first signal."""

    def __init__(self, exit_now: Callable[[int], object] = os._exit) -> None:
        self.received: int | None = None
        self.stop: Callable[[int], None] | None = None
        self.run_begun = False
        # os._exit: no unwinding, so no exception can surface in a __del__ or a loop callback
        # (as "Exception ignored", with a traceback) or be swallowed there.
        self._exit_now = exit_now

    def handle(self, signum: int, frame: object) -> None:
        """The signal handler; runs in the main thread between two bytecodes."""
        if self.received is None:
            self.received = signum
            if self.stop is not None:
                self.stop(signum)
            if self.run_begun:
                return
        self._exit_now(STATUS[self.received])

    def install(self) -> dict[int, Handler]:
        """Take over SIGINT and SIGTERM where nobody else has; return what was replaced, for
        restore(). Nothing outside the main thread, where signal handlers cannot be set."""
        replaced: dict[int, Handler] = {}
        for signum, unhandled in _UNHANDLED.items():
            try:
                if signal.getsignal(signum) is unhandled:
                    replaced[signum] = signal.signal(signum, self.handle)
            except ValueError:  # not the main thread
                break
        return replaced

    def restore(self, replaced: dict[int, Handler]) -> None:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)

    def ignore(self) -> None:
        """From now on both signals are ignored (where they were ours): the rest of the exit,
        Python's own teardown included, cannot be cut short. A handler of Python's would be
        put back to the default there, and the process die by the signal after all."""
        for signum in _UNHANDLED:
            if signal.getsignal(signum) == self.handle:
                signal.signal(signum, signal.SIG_IGN)


SIGNALS = Signals()


def main() -> None:
    """The afetch command as a process (console script, `python -m fetcher`)."""
    SIGNALS.install()
    from .cli import main as command

    code: str | int | None = 0
    try:
        command()
    except SystemExit as exc:
        code = exc.code
    for stream in (sys.stdout, sys.stderr):  # while a second signal still gets us out
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # Python reports it once more at exit; nothing is left to save here
    SIGNALS.ignore()
    if SIGNALS.received is not None:
        code = STATUS[SIGNALS.received]
    sys.exit(code)
