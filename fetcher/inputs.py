"""Input lines from arguments, files and stdin, read lazily so the first fetch starts at once.

Files and pipes are read in 64 KiB blocks on a thread of their own (a blocking read never
stalls the event loop), at most READ_AHEAD blocks ahead, so memory holds a few blocks of input
however long the input is.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .targets import is_skipped

READ_BLOCK = 64 * 1024
# Blocks read but not yet taken: one being split into lines, one ready behind it.
READ_AHEAD = 2
# The UTF-8 byte order mark some Windows editors put at the start of a text file: not part of
# the first target.
BOM = "\ufeff"
# A line longer than this is cut here (and the rest of it dropped) so a file without newlines
# cannot fill memory; the cut line is longer than any valid target, so it becomes one
# invalid-input record.
MAX_LINE_BYTES = 16 * 1024
STDIN = "-"


class InputError(Exception):
    """A read of an input file or of stdin failed (an I/O error, a file gone unreadable): a
    local problem, reported in one line naming the input, never as a bug."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read {name}: {reason}")


async def read_lines(arguments: Iterable[str], files: Iterable[str]) -> AsyncIterator[str]:
    """Yield the arguments, then every line of each file in turn ("-" is stdin); a byte order
    mark at the start of a file or of stdin is dropped."""
    for argument in arguments:
        yield argument
    for path in files:
        first = True
        async for line in _file_lines(path):
            yield line.removeprefix(BOM) if first else line
            first = False


def _stdin_reader() -> Callable[[int], bytes]:
    """os.read on fd 0 when stdin is a real file or pipe; the stream's own read otherwise (an
    embedding program or a test may have replaced sys.stdin)."""
    try:
        return functools.partial(os.read, sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        stream: Any = getattr(sys.stdin, "buffer", sys.stdin)
        read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        return read


async def _file_lines(path: str) -> AsyncIterator[str]:
    rest = b""
    overlong = False  # dropping the tail of a line already cut at MAX_LINE_BYTES
    async for block in _blocks(path):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if not overlong:
                yield _decode(line)
            overlong = False
        if len(rest) > MAX_LINE_BYTES:
            if not overlong:
                yield _decode(rest[:MAX_LINE_BYTES])
            rest, overlong = b"", True
    if rest and not overlong:
        yield _decode(rest)


async def _blocks(path: str) -> AsyncIterator[bytes]:
    """The blocks of a file or of stdin, read on a daemon thread of their own.

    Not asyncio.to_thread: the loop's executor is joined when the run ends, so a read that never
    returns (a pipe whose writer stays open, a FIFO nobody opens) kept a Ctrl-C'd afetch alive
    until input came. A thread of our own is left behind instead, holding nothing but its file.
    It opens and closes the file itself: closed under a read in flight, the descriptor's number
    could be reused by a connection, whose bytes the thread would then take.
    """
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[bytes | Exception] = asyncio.Queue()
    room = threading.Semaphore(READ_AHEAD)
    stop = threading.Event()

    def hand(item: bytes | Exception) -> None:
        try:
            loop.call_soon_threadsafe(blocks.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is left to read
            stop.set()

    def reader() -> None:
        fd = None
        try:
            if path == STDIN:
                read = _stdin_reader()
            else:
                fd = os.open(path, os.O_RDONLY)
                read = functools.partial(os.read, fd)
            while room.acquire() and not stop.is_set():
                block = read(READ_BLOCK)
                hand(block)
                if not block:
                    break
        except Exception as exc:  # raised where the lines are read, not lost with this thread
            hand(exc)
        finally:
            if fd is not None:
                os.close(fd)

    threading.Thread(target=reader, name="afetch-input", daemon=True).start()
    try:
        while item := await blocks.get():
            room.release()
            if isinstance(item, OSError):
                name = "stdin" if path == STDIN else path
                raise InputError(name, item.strerror or str(item)) from item
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        room.release()  # a reader waiting for room wakes, sees stop and closes its file


def _decode(line: bytes) -> str:
    # Undecodable bytes become U+FFFD: the line still yields one (invalid-input) record.
    return line.decode("utf-8", errors="replace").rstrip("\r")


# Files larger than this are not counted for the progress line's total (and so get no ETA):
# counting reads the whole input once more, which must stay a small cost next to the run.
MAX_COUNTED_BYTES = 256 * 1024 * 1024


def count_targets(
    arguments: Iterable[str], files: Iterable[str], expand: Callable[[str], int] | None = None
) -> int | None:
    """How many targets the input holds, or None when that is not cheap to know: stdin, a
    pipe or a device, or files over MAX_COUNTED_BYTES. `expand(line)` says how many targets
    one line makes (--ports); blank and comment lines make none."""
    paths = list(files)
    try:
        sizes = [os.stat(path) for path in paths if path != STDIN]
    except OSError:
        return None
    if len(sizes) < len(paths) or not all(stat.S_ISREG(s.st_mode) for s in sizes):
        return None
    if sum(s.st_size for s in sizes) > MAX_COUNTED_BYTES:
        return None

    def one(line: str) -> int:
        if is_skipped(line):
            return 0
        return expand(line) if expand is not None else 1

    total = sum(one(argument) for argument in arguments)
    for path in paths:
        with open(path, "rb") as handle:
            total += one(_decode(handle.readline()).removeprefix(BOM))
            total += sum(one(_decode(line)) for line in handle)
    return total
