"""--resume: skip the targets an earlier run already recorded in the -o file.

The output file is JSON Lines, one record per target (per input line, or with --ports per port
of a bare host), appended in whole lines. A run killed with SIGKILL may still leave a torn last
line; `repair` cuts it off before anything is appended, and the target it belonged to is fetched
again, so after any number of interrupts and resumes the file holds exactly one record per
target.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

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


def _key(line: str, port: int | None = None) -> int:
    """The digest of an input line, or of one of its --ports targets. 8-byte digests instead
    of the lines themselves keep a million done targets in ~50 MB."""
    text = line if port is None else f"{line}\0{port}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Recorded:
    """The records an earlier run left in the -o file, each of which marks one target done.

    A line makes one target, or with --ports one per port for a bare host: such a line is done
    port by port, so a run interrupted halfway through its ports fetches only the rest.
    """

    def __init__(self, lines: Counter[int], ports: Counter[int] | None = None) -> None:
        self._lines = lines  # records per input line
        self._ports = ports  # records per (input line, port); kept only for --ports runs
        self.skipped = 0  # targets take() said were done

    @classmethod
    def load(cls, path: str, *, by_port: bool = False) -> Recorded:
        lines: Counter[int] = Counter()
        ports: Counter[int] | None = Counter() if by_port else None
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return cls(lines, ports)
        with handle:
            for raw in handle:
                try:
                    record = json.loads(raw)
                    text = record["input"]
                    lines[_key(text)] += 1
                    if ports is not None and record.get("port") is not None:
                        ports[_key(text, record["port"])] += 1
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # not one of our records: it cannot mark anything as done
        return cls(lines, ports)

    def like(self) -> Recorded:
        """An empty Recorded of the same kind (by port or not): what add() fills with one
        chunk's share of the records, for a worker that has no access to the file."""
        return Recorded(Counter(), Counter() if self._ports is not None else None)

    def add(self, line: str, port: int | None = None) -> None:
        """Note one record for `line` (for `port` of an expanded line), as load() would."""
        done = self._lines if port is None or self._ports is None else self._ports
        key = _key(line, port)
        done[key] = done.get(key, 0) + 1

    def __len__(self) -> int:
        """Records found."""
        return sum(self._lines.values())

    def take(self, line: str, port: int | None = None) -> bool:
        """Whether the file holds a record for `line` (for `port` of an expanded line); each
        record answers yes once, so a line given twice is fetched again if recorded once."""
        done = self._lines if port is None or self._ports is None else self._ports
        key = _key(line, port)
        count = done.get(key, 0)
        if not count:
            return False
        if count == 1:
            del done[key]
        else:
            done[key] = count - 1
        self.skipped += 1
        return True
