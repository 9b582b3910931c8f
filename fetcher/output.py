"""Writers: seed-style text, JSON Lines and CSV, to stdout and optionally appended to a file.

Every record is formatted into whole lines before any byte of it is written, and batches are
written on complete-line boundaries, so no reader sees half a record.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from .config import Output
from .models import CSV_COLUMNS, RECORD_FIELDS, Result

Formatter = Callable[[Result], str]

# Bytes from servers are shown, never obeyed: C0 controls, DEL and C1 controls become \xNN, so
# a header value cannot move the cursor, retitle the terminal or ring the bell.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES[ord("\t")] = "\\t"
# How many bytes of records a pipe or file writer collects before writing, and how long it
# may hold them: large batches save syscalls, the timer keeps a slow run's output flowing.
BATCH_BYTES = 64 * 1024
BATCH_SECONDS = 0.2


def escape(text: str) -> str:
    """Make text safe to print on a terminal."""
    return text.translate(_ESCAPES)


def format_text(result: Result) -> str:
    """Seed style: `<input> header > <line>` per header line, or one `<input> error > ...`;
    after a --scheme auto fallback, first a `<input> scheme > http (https failed: ...)` line."""
    label = escape(result.label)
    lines = [_scheme_line(label, result)] if len(result.attempts) > 1 else []
    if result.error is not None:
        error = result.error
        lines.append(f"{label} error > {error.kind}: {escape(error.message)}\n")
        return "".join(lines)
    status = f"HTTP/{result.http_version} {result.status_code} {result.reason}".rstrip()
    lines.append(f"{label} header > {escape(status)}\n")
    lines.extend(
        f"{label} header > {escape(name)}: {escape(value)}\n" for name, value in result.headers
    )
    return "".join(lines)


def _scheme_line(label: str, result: Result) -> str:
    """The scheme tried last, and why each one before it was not used."""
    *failed, last = result.attempts
    reasons = ", ".join(
        f"{attempt.url.partition(':')[0]} failed: {attempt.error.kind}: {attempt.error.message}"
        for attempt in failed
        if attempt.error is not None
    )
    return f"{label} scheme > {last.url.partition(':')[0]} ({escape(reasons)})\n"


def format_jsonl(result: Result) -> str:
    """One JSON object per line; all non-ASCII escaped so the line is safe anywhere."""
    return _json_line(result.to_record())


# The stdlib encoder, one for the run (json.dumps with separators builds one per call): the
# reference output, and the fallback for the records orjson cannot write the same way.
_JSON = json.JSONEncoder(separators=(",", ":"))


def _json_line(record: dict[str, Any]) -> str:
    """`record` as one line of compact, ASCII-only JSON.

    orjson is about ten times faster than the stdlib here (some 6 us of the ~40 us afetch
    spends per record besides the I/O), and for ASCII records it writes the stdlib's line byte
    for byte (floats included: timings are rounded to 3 decimals, where both print the
    shortest repr). It never escapes non-ASCII and refuses lone surrogates: those rare records
    go through the stdlib encoder, which escapes both.
    """
    try:
        data = orjson.dumps(record)
        if data.isascii():
            return data.decode("ascii") + "\n"
    except orjson.JSONEncodeError:
        pass
    return _JSON.encode(record) + "\n"


def jsonl_formatter(fields: Sequence[str] = ()) -> Formatter:
    """JSON Lines with only `fields` (all of them, in the documented order, if empty)."""
    if not fields or tuple(fields) == RECORD_FIELDS:
        return format_jsonl
    chosen = tuple(fields)

    def format_fields(result: Result) -> str:
        record = result.to_record()
        return _json_line({name: record[name] for name in chosen})

    return format_fields


def csv_line(values: Sequence[object]) -> str:
    """One CSV line (RFC 4180 quoting, \n line end); None is an empty cell. Server bytes are
    escaped as in text output: a cell may be quoted, but must never move a terminal's cursor."""
    buffer = io.StringIO()
    cells = ["" if value is None else escape(str(value)) for value in values]
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def csv_formatter(fields: Sequence[str] = ()) -> Formatter:
    """CSV rows of `fields` (all CSV_COLUMNS if empty); the header row comes from csv_header."""
    chosen = tuple(fields) or CSV_COLUMNS

    def format_csv(result: Result) -> str:
        row = result.to_row()
        return csv_line([row[name] for name in chosen])

    return format_csv


@dataclass(frozen=True, slots=True)
class Format:
    """A formatter, and the header written once before the first record (CSV's column row)."""

    formatter: Formatter
    header: str = ""


def make_format(output: Output) -> Format:
    """The writer's format for --format/--fields."""
    if output.format == "csv":
        return Format(csv_formatter(output.fields), csv_line(output.fields or CSV_COLUMNS))
    if output.format == "jsonl":
        return Format(jsonl_formatter(output.fields))
    return Format(format_text)


class OutputClosed(Exception):
    """The reader of stdout went away (`afetch ... | head -1`): stop quietly."""


@dataclass(frozen=True, slots=True)
class Console:
    """What the terminal can take, decided once per run; tests build one with the flags set."""

    stdin_tty: bool
    stdout_tty: bool
    stderr_tty: bool

    @classmethod
    def detect(cls) -> Console:
        return cls(_isatty(sys.stdin), _isatty(sys.stdout), _isatty(sys.stderr))


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Stream:
    """One destination: a binary stream plus the whole lines waiting to be written to it."""

    __slots__ = ("stream", "pending", "size", "is_stdout", "before")

    def __init__(self, stream: BinaryIO, is_stdout: bool) -> None:
        self.stream = stream
        self.is_stdout = is_stdout
        self.before: Callable[[], None] | None = None  # called before each write
        self.pending: list[bytes] = []
        self.size = 0

    def flush(self) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.size = 0
        if self.before is not None:
            self.before()
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            if self.is_stdout:
                raise OutputClosed from None
            raise


class RecordWriter:
    """The sink the engine hands results to: formats once, writes to stdout and/or a file."""

    def __init__(
        self,
        formatter: Formatter,
        *,
        stdout: BinaryIO | None = None,
        file_path: str | None = None,
        file_formatter: Formatter | None = None,
        line_buffered: bool = False,
        header: str = "",
    ) -> None:
        """`header` (CSV's column row) is written first to stdout; the file, which has its own
        formatter, never gets it."""
        self._formatter = formatter
        self._file_formatter = file_formatter or formatter
        self._stdout = _Stream(stdout, True) if stdout is not None else None
        self._file: _Stream | None = None
        if file_path is not None:
            self._file = _Stream(open(file_path, "ab"), False)  # noqa: SIM115 - closed in close()
        if header and self._stdout is not None:
            self._add(self._stdout, header.encode("utf-8"))
        self._line_buffered = line_buffered
        self._timer: asyncio.TimerHandle | None = None
        self._error: Exception | None = None  # a failed timed flush, raised by the next write
        self.written = 0

    def write(self, result: Result) -> None:
        """Format and queue one record. Synchronous on purpose: with no await point inside,
        nothing can interrupt it between the first and the last byte of a record."""
        if self._error is not None:
            raise self._error
        text = self._formatter(result).encode("utf-8")
        if self._stdout is not None:
            self._add(self._stdout, text)
        if self._file is not None:
            same = self._file_formatter is self._formatter
            self._add(self._file, text if same else self._file_formatter(result).encode())
        self.written += 1
        if self._line_buffered:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(BATCH_SECONDS, self._flush_from_timer)

    def before_stdout(self, hook: Callable[[], None]) -> None:
        """Call `hook` before each write to stdout: the progress line uses it to step out of
        the way when stdout and stderr share a terminal."""
        if self._stdout is not None:
            self._stdout.before = hook

    def _add(self, stream: _Stream, data: bytes) -> None:
        stream.pending.append(data)
        stream.size += len(data)
        if stream.size >= BATCH_BYTES:
            stream.flush()

    def _flush_from_timer(self) -> None:
        self._timer = None
        try:
            self.flush()
        except (OutputClosed, OSError) as exc:
            self._error = exc

    def flush(self) -> None:
        for stream in (self._file, self._stdout):  # the file first: it is what --resume reads
            if stream is not None:
                stream.flush()

    def close(self) -> None:
        """Flush everything and close the file. Safe to call more than once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.flush()
            if self._error is not None:
                raise self._error
        finally:
            if self._file is not None:
                self._file.stream.close()
                self._file = None
