"""The live progress line on stderr, drawn with rich, for terminals only.

    ⠙ ━━━━━━━━━━╸━━━━━━━━━  1204/5000 done · 210/s · 1170 ok · 34 failed · ETA 0:00:18

The line is redrawn from the event loop a few times a second (rich's own refresh thread is
off: a second thread writing to the terminal could cut into our records). When stdout is the
same terminal, the writer calls clear() before each write, and the next update() redraws the
line below the records just written.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task
from rich.text import Text

from .stats import Tally

# Redraws per second: smooth enough for a counter, cheap at any request rate.
REFRESH_PER_SECOND = 8
_ERASE_LINE = "\r\x1b[2K"


class _Counts(ProgressColumn):
    """done[/total] done · rate/s · ok · failed · ETA (only with a total)."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        total = f"/{int(task.total)}" if task.total is not None else ""
        # The rate over the whole run so far: steadier than a recent window, and what an ETA
        # for the rest of a long, even run should go by.
        elapsed = task.elapsed or 0.0
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [
            f"{done}{total} done",
            f"{rate:.0f}/s",
            f"{task.fields.get('ok', 0)} ok",
            f"{task.fields.get('failed', 0)} failed",
        ]
        if task.total is not None and rate > 0:
            remaining = max(0.0, task.total - done) / rate
            parts.append(f"ETA {timedelta(seconds=round(remaining))}")
        # One line whatever the width: cut with an ellipsis, never wrapped (a wrapped line is
        # two to erase and redraw, and a narrow terminal would scroll with every redraw).
        return Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")


class ProgressLine:
    """Shows how far a run is, from its Tally. start() and stop() bracket the run."""

    def __init__(self, stream: TextIO, tally: Tally) -> None:
        self._stream = stream
        self._tally = tally
        # The caller decided stream is a terminal (output.Console, once per run): say so to
        # rich instead of letting it guess again.
        console = Console(file=stream, force_terminal=True, highlight=False)
        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(bar_width=20),
            _Counts(),
            console=console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task("afetch", total=None, ok=0, failed=0)
        self._timer: asyncio.TimerHandle | None = None
        self._cleared = False

    def start(self) -> None:
        self._progress.start()
        self._tick()

    def stop(self) -> None:
        """Erase the line (and restore the cursor); safe to call more than once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._progress.stop()

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def update(self) -> None:
        """Take the counts from the tally; redraw at once if a write just erased the line."""
        tally = self._tally
        self._progress.update(self._task, completed=tally.done, ok=tally.ok, failed=tally.failed)
        if self._cleared:
            self._redraw()

    def clear(self) -> None:
        """Erase the line so that records written to the same terminal start on a clean line."""
        if not self._cleared:
            self._stream.write(_ERASE_LINE)
            self._stream.flush()
            self._cleared = True

    def _redraw(self) -> None:
        self._cleared = False
        self._progress.refresh()

    def _tick(self) -> None:
        self._redraw()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(1 / REFRESH_PER_SECOND, self._tick)
