"""--resume: skip the targets an earlier run already recorded in the -o file.

The output file is JSON Lines, one record per input line, appended in whole lines. A run killed
with SIGKILL may still leave a torn last line; `repair` cuts it off before anything is appended,
and the target it belonged to is fetched again, so after any number of interrupts and resumes
the file holds exactly one record per input line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator

READ_BLOCK = 64 * 1024


def repair(path: str) -> int:
    """Truncate a torn (unterminated) last line; return the number of bytes removed."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        end = size
        while end > 0:
            start = max(0, end - READ_BLOCK)
            block = os.pread(fd, end - start, start)
            newline = block.rfind(b"\n")
            if newline != -1:
                end = start + newline + 1
                break
            end = start
        if end < size:
            os.ftruncate(fd, end)
        return size - end
    finally:
        os.close(fd)


def _key(line: str) -> int:
    # 8-byte digests instead of the lines themselves keep a million done targets in ~50 MB.
    return int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "big")


def recorded_inputs(path: str) -> Counter[int]:
    """How many records the file holds for each input line (by digest)."""
    done: Counter[int] = Counter()
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return done
    with handle:
        for raw in handle:
            try:
                record = json.loads(raw)
                done[_key(record["input"])] += 1
            except (ValueError, KeyError, TypeError):
                continue  # not one of our records: it cannot mark anything as done
    return done


async def skip_recorded(lines: AsyncIterator[str], done: Counter[int]) -> AsyncIterator[str]:
    """Drop as many occurrences of each line as the file already has records for."""
    async for line in lines:
        if done:
            key = _key(line.strip())
            if done[key] > 0:
                done[key] -= 1
                if not done[key]:
                    del done[key]
                continue
        yield line
