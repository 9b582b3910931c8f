"""Input lines: files, stdin, byte order marks."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest

from fetcher.inputs import count_targets, read_lines

BOM = b"\xef\xbb\xbf"


def lines(arguments: list[str], files: list[str]) -> list[str]:
    async def collect() -> list[str]:
        return [line async for line in read_lines(arguments, files)]

    return asyncio.run(collect())


def test_a_byte_order_mark_is_dropped_from_the_first_line_of_each_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(BOM + b"example.com\r\nexample.org\n")
    second.write_bytes(BOM + b"example.net\n" + BOM + b"kept.example\n")
    assert lines(["\ufeffarg.example"], [str(first), str(second)]) == [
        "\ufeffarg.example",  # an argument is taken as given
        "example.com",
        "example.org",
        "example.net",
        "\ufeffkept.example",  # not at the start of a file: the line's own byte
    ]
    assert count_targets([], [str(first), str(second)]) == 4


def test_a_byte_order_mark_is_dropped_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(BOM + b"example.com\nexample.org\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert lines([], ["-"]) == ["example.com", "example.org"]


def test_a_file_of_only_a_byte_order_mark_is_one_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "bom-only.txt"
    path.write_bytes(BOM)
    assert lines([], [str(path)]) == [""]
