"""The progress line, rendered into a string standing in for a terminal."""

from __future__ import annotations

import asyncio
import io

from test_stats import answered, failed

from fetcher.errors import FetchTimeout
from fetcher.progress import ProgressLine
from fetcher.stats import Tally


def test_progress_line_shows_counts_rate_and_eta_then_disappears() -> None:
    screen = io.StringIO()
    tally = Tally()

    async def go() -> str:
        progress = ProgressLine(screen, tally)
        progress.start()
        progress.set_total(10)
        for _ in range(4):
            tally.count(answered(200, 1.0))
        tally.count(failed(FetchTimeout("t", "read")))
        progress.update()
        await asyncio.sleep(0.3)  # a few timed redraws
        drawn = screen.getvalue()
        progress.stop()
        progress.stop()  # twice is harmless
        return drawn

    drawn = asyncio.run(go())
    assert "5/10 done" in drawn and "4 ok" in drawn and "1 failed" in drawn
    assert "/s" in drawn and "ETA" in drawn


def test_progress_line_stays_one_line_on_an_80_column_terminal() -> None:
    """Long counts are cut with an ellipsis, never wrapped onto a second line."""
    screen = io.StringIO()  # rich takes a file that is no terminal to be 80 columns wide
    tally = Tally(ok=1_234_567, failed=765_432)

    async def go() -> str:
        progress = ProgressLine(screen, tally)
        progress.start()
        progress.set_total(10_000_000)
        progress.update()
        await asyncio.sleep(0.3)  # a timed redraw
        drawn = screen.getvalue()
        progress.stop()
        return drawn

    drawn = asyncio.run(go())
    assert "1999999/10000000 done" in drawn and "\n" not in drawn


def test_progress_without_a_total_has_no_eta() -> None:
    screen = io.StringIO()
    tally = Tally()

    async def go() -> None:
        progress = ProgressLine(screen, tally)
        progress.start()
        tally.count(answered(200, 1.0))
        progress.update()
        progress.stop()

    asyncio.run(go())
    assert "1 done" in screen.getvalue() and "ETA" not in screen.getvalue()


def test_progress_clears_its_line_before_records_and_redraws_after() -> None:
    screen = io.StringIO()
    tally = Tally()

    async def go() -> None:
        progress = ProgressLine(screen, tally)
        progress.start()
        mark = len(screen.getvalue())
        progress.clear()
        progress.clear()  # already clear: nothing more written
        assert screen.getvalue()[mark:] == "\r\x1b[2K"
        tally.count(answered(200, 1.0))
        progress.update()  # redraws at once after a clear
        assert "1 done" in screen.getvalue()[mark:]
        progress.stop()

    asyncio.run(go())
