"""Input lines from arguments, files and stdin, read lazily so the first fetch starts at once.

Files and pipes are read in 64 KiB blocks on a worker thread (a blocking read never stalls the
event loop), so memory holds one block of input however long the input is.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .targets import is_skipped

READ_BLOCK = 64 * 1024
# The UTF-8 byte order mark some Windows editors put at the start of a text file: not part of
# the first target.
BOM = "\ufeff"
# A line longer than this is cut here (and the rest of it dropped) so a file without newlines
# cannot fill memory; the cut line is longer than any valid target, so it becomes one
# invalid-input record.
MAX_LINE_BYTES = 16 * 1024
STDIN = "-"


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
    fd: int | None = None
    if path == STDIN:
        read = _stdin_reader()
    else:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        read = functools.partial(os.read, fd)
    try:
        rest = b""
        overlong = False  # dropping the tail of a line already cut at MAX_LINE_BYTES
        while block := await asyncio.to_thread(read, READ_BLOCK):
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
    finally:
        if fd is not None:
            os.close(fd)


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
