"""Writers: seed-style text, one line per target, JSON Lines and CSV, to stdout and optionally
to a JSON Lines file.

Every record is formatted into whole lines before any byte of it is written, and batches are
written on complete-line boundaries, so no reader sees half a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from .config import Output
from .models import Result
from .records import CSV_COLUMNS, LINE_FIELDS, RECORD_FIELDS
from .tls import Cert, TLSInfo, expires_within

if TYPE_CHECKING:
    from .audit import Audit

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
    after a --scheme auto fallback, first a `<input> scheme > http (https failed: ...)` line;
    under --audit, last an `<input> audit > ...` line."""
    label = escape(result.label)
    lines = [_scheme_line(label, result)] if len(result.attempts) > 1 else []
    if result.tls is not None:
        lines.append(f"{label} tls > {escape(tls_summary(result.tls, result.timestamp))}\n")
    if result.error is not None:
        error = result.error
        lines.append(f"{label} error > {error.kind}: {escape(error.message)}\n")
        return "".join(lines)
    status = f"HTTP/{result.http_version} {result.status_code} {result.reason}".rstrip()
    lines.append(f"{label} header > {escape(status)}\n")
    lines.extend(
        f"{label} header > {escape(name)}: {escape(value)}\n" for name, value in result.headers
    )
    if result.audit is not None:
        lines.append(_audit_line(label, result.audit))
    return "".join(lines)


def _audit_line(label: str, graded: Audit) -> str:
    """`<input> audit > B+ 80: <result> -20, ...`: the grade, the score, what cost points."""
    costs = ", ".join(
        f"{test.result} {test.modifier}" for test in graded.tests.values() if test.modifier < 0
    )
    return f"{label} audit > {graded.grade} {graded.score}{': ' if costs else ''}{costs}\n"


def _scheme_line(label: str, result: Result) -> str:
    """The scheme tried last, and why each one before it was not used."""
    *failed, last = result.attempts
    reasons = ", ".join(
        f"{attempt.url.partition(':')[0]} failed: {attempt.error.kind}: {attempt.error.message}"
        for attempt in failed
        if attempt.error is not None
    )
    return f"{label} scheme > {last.url.partition(':')[0]} ({escape(reasons)})\n"


# --format line on a terminal: the status in its class's SGR colour (2xx green, 3xx cyan, 4xx
# yellow, 5xx red, 1xx blue), the error kind of a failure in red. Never in a pipe or a file.
_STATUS_COLOURS = {1: "34", 2: "32", 3: "36", 4: "33", 5: "31"}
_ERROR_COLOUR = "31"


def line_formatter(fields: Sequence[str] = (), *, colour: bool = False) -> Formatter:
    """`--format line`: `URL [200 OK] [server] [type] [length] [ip] [12ms] ...` per target, the
    URL the final one (after -L, the scheme that answered with --scheme auto), the brackets
    those of `fields` that the record has (all of LINE_FIELDS if empty); a failure is
    `URL [error-kind] message`."""
    chosen = tuple(fields) or LINE_FIELDS

    def format_line(result: Result) -> str:
        url = escape(result.final_url or result.label)
        error = result.error
        if error is not None:
            kind = _paint(error.kind, _ERROR_COLOUR, colour)
            return f"{url} [{kind}] {escape(error.message)}\n"
        status = escape(f"{result.status_code} {result.reason or ''}".rstrip())
        code = result.status_code or 0
        parts = [url, f"[{_paint(status, _STATUS_COLOURS.get(code // 100, ''), colour)}]"]
        facts = _line_facts(result, chosen)
        parts.extend(f"[{escape(facts[name])}]" for name in chosen if facts.get(name))
        return " ".join(parts) + "\n"

    return format_line


def _paint(text: str, sgr: str, colour: bool) -> str:
    return f"\x1b[{sgr}m{text}\x1b[0m" if colour and sgr else text


def _line_facts(result: Result, chosen: Sequence[str]) -> dict[str, str]:
    """LINE_FIELDS name -> its bracket's text, for the facts this record has."""
    headers = result.headers_by_name()
    facts = {
        name: values[0]
        for name, values in (
            ("server", headers.get("server")),
            ("content_type", headers.get("content-type")),
            ("content_length", headers.get("content-length")),
        )
        if values
    }
    if result.host_ip:
        facts["host_ip"] = result.host_ip
    total = result.timings.get("total")
    if total is not None:
        facts["total_ms"] = f"{total:.0f}ms"
    if result.redirects:
        count = len(result.redirects)
        facts["redirect_count"] = f"{count} redirect{'s' if count > 1 else ''}"
    tls = result.tls
    if "tls_expiry" in chosen and tls is not None:
        cert = tls.cert  # parsed on first use, cached by fingerprint
        if isinstance(cert, Cert):
            facts["tls_expiry"] = _expiry(cert.not_after_text, cert.days_left(result.timestamp))
    if result.audit is not None:
        facts["audit_grade"] = f"grade {result.audit.grade}"
    return facts


def _expiry(not_after: str, days_left: int) -> str:
    """`cert expires 2027-03-01 (89 days)`, or `cert expired 2026-01-01` once it has."""
    if days_left < 0:
        return f"cert expired {not_after[:10]}"
    return f"cert expires {not_after[:10]} ({days_left} day{'' if days_left == 1 else 's'})"


def tls_summary(tls: TLSInfo, now: float) -> str:
    """`TLSv1.3 TLS_AES_256_GCM_SHA384 h2, CN=www.example.com, expires 2027-03-01 (89 days),
    verified`: the text line's TLS facts, `now` (epoch seconds) for the days left."""
    tls.settle()
    parts = [" ".join(part for part in (tls.version, tls.cipher, tls.alpn) if part)]
    cert = tls.cert
    if isinstance(cert, Cert):
        name = f"CN={cert.subject_cn}" if cert.subject_cn else f"SAN={','.join(cert.sans)}"
        days = cert.days_left(now)
        parts += [name, f"expires {cert.not_after:%Y-%m-%d} ({days} day{'' if days == 1 else 's'})"]
    else:
        parts.append(cert.reason if cert is not None else tls.capture_error or "no certificate")
    if tls.verified:
        parts.append("verified")
    else:
        verdict = "not verified" if tls.verified is False else "verdict unknown"
        parts.append(f"{verdict}: {tls.verify_error}")
    return ", ".join(part for part in parts if part)


def format_jsonl(result: Result) -> str:
    """One JSON object per line; all non-ASCII escaped so the line is safe anywhere."""
    return json_line(result.to_record())


# The stdlib encoder, one for the run (json.dumps with separators builds one per call): the
# reference output, and the fallback for the records orjson cannot write the same way.
_JSON = json.JSONEncoder(separators=(",", ":"))


def json_line(record: dict[str, Any]) -> str:
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
        return json_line({name: record[name] for name in chosen})

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


def make_format(output: Output, *, colour: bool = False) -> Format:
    """The writer's format for --format/--fields; `colour` (a terminal) for --format line."""
    if output.format == "csv":
        return Format(csv_formatter(output.fields), csv_line(output.fields or CSV_COLUMNS))
    if output.format == "jsonl":
        return Format(jsonl_formatter(output.fields))
    if output.format == "line":
        return Format(line_formatter(output.fields, colour=colour))
    return Format(format_text)


def shown_filter(output: Output) -> Callable[[Result], bool]:
    """Whether a record goes to stdout: --match-status and --filter-status on its status,
    --min-grade on its audit grade, --cert-expires-within on its certificate. One test for
    one process's writer and a worker's chunk alike (the -o file gets every record)."""
    shows, expiring = output.shows, output.cert_expires_within

    def shown(result: Result) -> bool:
        graded = result.audit
        if not shows(result.status_code, graded.grade if graded is not None else None):
            return False
        return expiring is None or expires_within(result.tls, expiring, result.timestamp)

    return shown


class OutputClosed(Exception):
    """The reader of stdout went away (`afetch ... | head -1`): stop quietly."""


@dataclass(frozen=True, slots=True)
class Console:
    """What the terminal can take, decided once per run; tests build one with the flags set."""

    stdin_tty: bool
    stdout_tty: bool
    stderr_tty: bool
    no_colour: bool = False  # NO_COLOR is set (no-color.org)

    @classmethod
    def detect(cls) -> Console:
        no_colour = bool(os.environ.get("NO_COLOR"))
        return cls(_isatty(sys.stdin), _isatty(sys.stdout), _isatty(sys.stderr), no_colour)

    @property
    def colour(self) -> bool:
        """Colour on stdout: a terminal, and NO_COLOR unset."""
        return self.stdout_tty and not self.no_colour


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class OutputError(Exception):
    """A write to stdout or to the -o file failed (a full disk, an I/O error): a local problem,
    reported in one line naming the destination, never as a bug."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot write to {name}: {reason}")
        self.name = name
        self.reason = reason


def _fileno(stream: BinaryIO) -> int | None:
    """The stream's file descriptor, or None for an in-memory stream (a test, an embedding
    program)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last
        return None


class _Stream:
    """One destination: its file descriptor (or, without one, a binary stream) plus the whole
    lines waiting to be written to it.

    With a descriptor every batch goes out with os.write until all of it is written, so the
    bytes that reached the file are known when a write fails; if they end in part of a line
    and the destination is a regular file, that part is cut off again. Whatever the error, the
    destination then holds whole records only.
    """

    __slots__ = ("stream", "fd", "name", "pending", "size", "is_stdout", "before")

    def __init__(self, stream: BinaryIO | None, fd: int | None, name: str, is_stdout: bool) -> None:
        self.stream = stream
        self.fd = fd
        self.name = name
        self.is_stdout = is_stdout
        self.before: Callable[[], None] | None = None  # called before each write
        self.pending: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.pending.append(data)
        self.size += len(data)
        if self.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.size = 0
        if self.before is not None:
            self.before()
        written = 0
        try:
            if self.fd is None:
                assert self.stream is not None
                self.stream.write(data)
                self.stream.flush()
            else:
                view = memoryview(data)
                while written < len(data):
                    written += os.write(self.fd, view[written:])
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) and self.is_stdout:
                raise OutputClosed from None
            self._cut_torn_line(data, written)
            raise OutputError(self.name, exc.strerror or str(exc)) from exc

    def _cut_torn_line(self, data: bytes, written: int) -> None:
        """After a failed write, remove the part of a line that did reach a regular file."""
        torn = written - (data.rfind(b"\n", 0, written) + 1)
        if not torn or self.fd is None:
            return
        with contextlib.suppress(OSError):  # the disk that failed may refuse this too
            if stat.S_ISREG(os.fstat(self.fd).st_mode):
                os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR) - torn)


class RecordWriter:
    """The sink the engine hands results to: formats once, writes the shown records to stdout
    and every record to the -o file (what --resume reads)."""

    def __init__(
        self,
        formatter: Formatter,
        *,
        stdout: BinaryIO | None = None,
        file_path: str | None = None,
        file_formatter: Formatter | None = None,
        line_buffered: bool = False,
        header: str = "",
        append: bool = True,
    ) -> None:
        """`header` (CSV's column row) is written first to stdout; the file, which has its own
        formatter, never gets it. The file is appended to, or with `append=False` emptied
        first. Raises OSError when the file cannot be opened."""
        self._formatter = formatter
        self._file_formatter = file_formatter or formatter
        self._stdout: _Stream | None = None
        if stdout is not None:
            stdout.flush()  # anything written before us goes first
            self._stdout = _Stream(stdout, _fileno(stdout), "stdout", True)
        self._file: _Stream | None = None
        self._file_path = file_path
        if file_path is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
            self._file = _Stream(None, os.open(file_path, flags, 0o666), file_path, False)
        if header and self._stdout is not None:
            self._stdout.add(header.encode("utf-8"))
        self._line_buffered = line_buffered
        self._timer: asyncio.TimerHandle | None = None
        self._error: Exception | None = None  # the first failed write, raised by the next
        self.written = 0  # records written to the file, or to stdout when there is no file

    def write(self, result: Result, *, shown: bool = True) -> None:
        """Format and queue one record: to the file always, to stdout if `shown`. Synchronous
        on purpose: with no await point inside, nothing can interrupt it between the first and
        the last byte of a record. Raises OutputClosed or OutputError once a write failed."""
        if self._error is not None:
            raise self._error
        if self._file is None and not (shown and self._stdout is not None):
            return
        text = b""
        if shown and self._stdout is not None:
            text = self._formatter(result).encode("utf-8")
            self._stdout.add(text)
        if self._file is not None:
            same = bool(text) and self._file_formatter is self._formatter
            self._file.add(text if same else self._file_formatter(result).encode("utf-8"))
        self.written += 1
        if self._line_buffered:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(BATCH_SECONDS, self._flush_from_timer)

    def write_formatted(self, stdout: bytes, file: bytes, records: int) -> None:
        """Queue records formatted elsewhere (by a worker: see scale.py), as whole lines: the
        shown ones in stdout's format, every one in the file's. `records` counts them as
        write() would. Raises OutputClosed or OutputError once a write failed."""
        if self._error is not None:
            raise self._error
        if stdout and self._stdout is not None:
            self._stdout.add(stdout)
        if file and self._file is not None:
            self._file.add(file)
        self.written += records
        if self._line_buffered:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(BATCH_SECONDS, self._flush_from_timer)

    @property
    def destinations(self) -> tuple[bool, bool]:
        """Whether records go to stdout, and whether to the -o file."""
        return self._stdout is not None, self._file is not None

    @property
    def file_name(self) -> str | None:
        """The -o file's path, or None without one."""
        return self._file_path

    def before_stdout(self, hook: Callable[[], None]) -> None:
        """Call `hook` before each write to stdout: the progress line uses it to step out of
        the way when stdout and stderr share a terminal."""
        if self._stdout is not None:
            self._stdout.before = hook

    def _flush_from_timer(self) -> None:
        self._timer = None
        with contextlib.suppress(OutputClosed, OutputError):  # kept in _error for the next write
            self.flush()

    def flush(self) -> None:
        """Write what is queued, the file first: it is what --resume reads."""
        try:
            for stream in (self._file, self._stdout):
                if stream is not None:
                    stream.flush()
        except (OutputClosed, OutputError) as exc:
            self._error = self._error or exc
            raise

    def close(self) -> None:
        """Flush everything and close the file; each destination is flushed even when the
        other failed. Raises the first failure. Safe to call more than once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in (self._file, self._stdout):
            if stream is None:
                continue
            try:
                stream.flush()
            except (OutputClosed, OutputError) as exc:
                self._error = self._error or exc
        if self._file is not None:
            fd, name = self._file.fd, self._file.name
            self._file = None
            assert fd is not None
            try:
                os.close(fd)
            except OSError as exc:  # NFS reports a failed write at close
                self._error = self._error or OutputError(name, exc.strerror or str(exc))
        if self._error is not None:
            raise self._error
