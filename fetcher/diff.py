"""afetch diff OLD NEW: what changed between two runs' JSON Lines, target by target.

Two files of a million records each must fit in a few hundred MB, so no record is kept whole.
Each side is read once into an index, input digest -> one int packing a digest of the facts
compared, the port and the record's file offset (about 130 bytes per record in CPython, a dict
per input only for the inputs --ports made several records of). Only the targets whose digests
differ are read again, by offset, to say what changed. The digest is a filter: `describe` is the
authority, so a digest that differs for a reason no change kind reports (a `tls` field only one
run has) costs a re-read, never a false report. On big files NEW is indexed in a forked child
while OLD is indexed here, one file per core (`_index_both`).

Matching: records pair by input and port. An input with one record on each side pairs whatever
the ports (`--scheme auto` answered on 443 one day, on 80 the next: a changed URL, not a target
that vanished and another that appeared). A target recorded twice in one file (an -o file
appended by two runs) counts as a duplicate, and its last record stands.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any, BinaryIO

import click
import orjson

from .output import escape, json_line
from .status import ExitCode

# A record is one response head, at most 256 KiB of header bytes (http1.py), which JSON's \uXXXX
# escapes can make six times longer; anything longer than this is not a record, and skipping it
# keeps a file without newlines (a binary file given by mistake) from being read into memory.
MAX_LINE = 8 * 1024 * 1024
# A file whose first this many non-blank lines hold no record is not afetch JSON Lines: stop
# there rather than read gigabytes of something else.
PROBE_LINES = 1000
# Offsets are packed into 40 bits of an index entry: 1 TiB per file.
MAX_FILE_SIZE = 1 << 40
# `expiring`: a certificate with this many days left or fewer; certbot renews at 30.
DEFAULT_EXPIRY_DAYS = 30
# Header names seen get their compared/ignored decision cached; a server inventing a new name
# per response must not grow the cache without end.
NAME_CACHE_LIMIT = 10_000

# Headers whose values change from one response to the next on an unchanged site: ignored unless
# --only-header asks for them. Globs as in --ignore-header. Listed in the README (afetch diff).
DEFAULT_IGNORED_HEADERS = (
    # Clocks and caches: every response, or every cache refresh.
    "date", "age", "expires", "last-modified", "etag", "retry-after",
    # The body's size: dynamic pages differ on every GET.
    "content-length",
    # Request and trace ids, any vendor.
    "*-request-id", "*-requestid", "request-id", "*-trace-id", "*-traceid", "traceparent",
    "tracestate", "x-b3-*", "x-correlation-id", "x-cloud-trace-context", "x-amzn-trace-id",
    "x-amz-id-2", "server-timing", "x-runtime", "x-response-time",
    # CDN edges: which node, which cache state, this hop's trace.
    "cf-ray", "cf-cache-status", "x-amz-cf-id", "x-amz-cf-pop", "x-cache", "x-cache-hits",
    "x-cache-status", "x-cache-lookup", "x-served-by", "x-timer", "x-varnish", "via", "x-via",
    "x-iinfo", "akamai-grn", "x-akamai-transformed", "x-azure-ref", "x-msedge-ref",
    "x-vercel-id", "x-vercel-cache", "x-fb-debug", "x-proxy-cache", "report-to",
    "eagleid", "x-swift-savetime", "x-swift-cachetime", "x-nws-log-uuid", "x-ser",
    "ali-swift-global-savetime", "x-envoy-upstream-service-time",
)  # fmt: skip
# Set-Cookie is compared by the cookies it sets and their attributes, never by their values
# (session ids) or their lifetimes (an Expires date moves with the clock).
COOKIE_VOLATILE_ATTRIBUTES = frozenset({"expires", "max-age"})

# What a change can be; the `kind` of each text line and JSON change (a stable interface).
CHANGE_KINDS = (
    "appeared", "disappeared", "status", "failed", "answered", "error", "header-added",
    "header-removed", "header-changed", "address", "url", "redirects", "final-url",
    "certificate", "expiring", "grade",
)  # fmt: skip
_ADDED = frozenset({"appeared", "answered", "header-added"})
_REMOVED = frozenset({"disappeared", "failed", "header-removed"})

# Index entry: digest << DIGEST_SHIFT | port << PORT_SHIFT | offset, in 117 bits: CPython
# stores ints in 30-bit digits, so up to 120 bits take 40 bytes, and 60-bit keys 32 (64 bits
# would take 44 and 36: 8 MB more per million records). Two 60-bit digests of different facts
# agree once in 10^18.
PORT_SHIFT = 40
DIGEST_SHIFT = 57
DIGEST_BITS = 60
_OFFSET_MASK = (1 << PORT_SHIFT) - 1
_PORT_MASK = (1 << (DIGEST_SHIFT - PORT_SHIFT)) - 1
_DIGEST_MASK = (1 << DIGEST_BITS) - 1
_LOW_MASK = (1 << 64) - 1
# NEW is indexed in a forked child while this process indexes OLD: on two cores, about 40% less
# wall time for a million records per side. Below this size a fork is not worth its cost.
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
_ABSENT = object()  # a field the record does not carry at all (older afetch, no --tls)


class DiffExit(enum.IntEnum):
    """As diff(1): 0 the same, 1 changes, 2 trouble (one line on stderr)."""

    SAME = 0
    CHANGED = 1
    TROUBLE = 2


class DiffError(Exception):
    """An input that cannot be compared (missing, not a file, not JSON Lines): exit 2."""


class HeaderPolicy:
    """Which header names are compared: all but the ignored ones, or only the --only-header ones
    (less any --ignore-header). Names are globs, matched case-insensitively."""

    def __init__(self, ignore: Sequence[str] = (), only: Sequence[str] = ()) -> None:
        self.ignore = tuple(name.lower() for name in ignore)
        self.only = tuple(name.lower() for name in only)
        ignored = self.ignore if self.only else DEFAULT_IGNORED_HEADERS + self.ignore
        self._ignored = _glob(ignored)
        self._only = _glob(self.only) if self.only else None
        self._decided: dict[str, bool] = {}

    def compares(self, name: str) -> bool:
        decided = self._decided.get(name)
        if decided is None:
            lower = name.lower()
            decided = not self._ignored(lower) and (self._only is None or self._only(lower))
            if len(self._decided) < NAME_CACHE_LIMIT:
                self._decided[name] = decided
        return decided

    def facet(self, headers: Any) -> dict[str, tuple[str, ...]]:
        """The compared headers of a record: name -> values (Set-Cookie in compared form)."""
        if not headers:
            return {}
        if type(headers) is not dict:
            raise TypeError("headers is not an object")
        compares = self.compares
        kept = {}
        for name, values in headers.items():
            if compares(name):
                if name == "set-cookie":
                    kept[name] = cookie_forms(values)
                else:  # a list of strings in afetch's records; anything else, as one value
                    kept[name] = tuple(values) if isinstance(values, list) else (values,)
        return kept

    def digest(self, headers: Any) -> int:
        """A digest of what `facet` keeps, built in C as far as it goes: the hot path (about
        3 us less per record of 15 headers than hashing `facet`). It depends on header order,
        which `facet` does not: a server that reorders costs a re-read, not a report."""
        if not headers:
            return 0
        if type(headers) is not dict:
            raise TypeError("headers is not an object")
        decided = self._decided
        try:
            kept = {name: values for name, values in headers.items() if decided[name]}
        except KeyError:  # a name not decided yet, or not cached (NAME_CACHE_LIMIT)
            compares = self.compares
            kept = {name: values for name, values in headers.items() if compares(name)}
        cookies = kept.get("set-cookie")
        if cookies:
            kept["set-cookie"] = cookie_forms(cookies)
        return hash(_dumps(kept))


def _dumps(value: Any) -> bytes:
    """JSON bytes to hash; the stdlib writes the lone surrogates orjson refuses."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def _glob(patterns: Iterable[str]) -> Any:
    """One matcher for a set of names and globs: a set lookup, then one regex for the globs."""
    names = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = [fnmatch.translate(p) for p in patterns if p not in names]
    regex = re.compile("|".join(globs)).match if globs else None

    def match(name: str) -> bool:
        return name in names or (regex is not None and regex(name) is not None)

    return match


def cookie_forms(values: Iterable[str]) -> tuple[str, ...]:
    """Set-Cookie values without the cookie values and lifetimes, sorted:
    `sid=abc; Path=/; Expires=...; HttpOnly` -> `sid; path=/; httponly`."""
    forms = []
    for value in values:
        parts = value.split(";")
        name = parts[0].split("=", 1)[0].strip()
        kept = [name]
        for attribute in parts[1:]:
            key, equals, rest = attribute.strip().partition("=")
            key = key.strip().lower()
            if key and key not in COOKIE_VOLATILE_ATTRIBUTES:
                kept.append(f"{key}={rest.strip()}" if equals else key)
        forms.append("; ".join(kept))
    return tuple(sorted(forms))


@dataclass(frozen=True, slots=True)
class Options:
    """What counts as a change."""

    headers: HeaderPolicy = field(default_factory=HeaderPolicy)
    expiry_days: int = DEFAULT_EXPIRY_DAYS


def _error_kind(record: dict[str, Any]) -> Any:
    error = record.get("error")
    return error.get("kind") if type(error) is dict else None


def _cert(record: dict[str, Any]) -> dict[str, Any] | None:
    tls = record.get("tls")
    cert = tls.get("cert") if type(tls) is dict else None
    return cert if type(cert) is dict else None


def _expiring(cert: dict[str, Any] | None, days: int) -> bool:
    left = cert.get("days_left") if cert else None
    return isinstance(left, int | float) and left <= days


def _grade(record: dict[str, Any]) -> Any:
    audit = record.get("audit")
    return audit.get("grade") if type(audit) is dict else None


def digest(record: dict[str, Any], options: Options) -> int:
    """A 60-bit digest of the facts `describe` compares: equal digests, nothing to report.
    Raises TypeError for a record whose fields have the wrong shapes."""
    if record.get("failed"):
        return hash((True, _error_kind(record))) & _DIGEST_MASK
    redirects = record.get("redirects")
    tls: Any = _ABSENT
    if "tls" in record:
        cert = _cert(record)
        tls = (cert.get("sha256"), _expiring(cert, options.expiry_days)) if cert else None
    facts = (
        record.get("status_code"),
        record.get("url"),
        record.get("final_url"),
        record.get("host_ip"),
        _dumps(redirects) if redirects else None,
        options.headers.digest(record.get("headers")),
        tls,
        _grade(record) if "audit" in record else _ABSENT,
    )
    return hash(facts) & _DIGEST_MASK


@dataclass(frozen=True, slots=True)
class Change:
    """One fact that differs; `old`/`new` are None where the fact is absent."""

    kind: str
    old: Any = None
    new: Any = None
    name: str | None = None  # the header, for header-* changes
    message: str | None = None  # the error message, when the new side failed

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        if self.name is not None:
            data["name"] = self.name
        data["old"], data["new"] = self.old, self.new
        if self.message is not None:
            data["message"] = self.message
        return data


def outcome(record: dict[str, Any]) -> Any:
    """What a fetch came to: its status code, or its error kind."""
    return _error_kind(record) if record.get("failed") else record.get("status_code")


def _message(record: dict[str, Any]) -> str | None:
    error = record.get("error")
    message = error.get("message") if type(error) is dict else None
    return message if isinstance(message, str) else None


def describe(old: dict[str, Any], new: dict[str, Any], options: Options) -> list[Change]:
    """Every reported difference between two records of one target, in a fixed order."""
    old_failed, new_failed = bool(old.get("failed")), bool(new.get("failed"))
    if old_failed or new_failed:  # a failure has no head to compare: the outcome says it all
        if not old_failed:
            return [Change("failed", outcome(old), outcome(new), message=_message(new))]
        if not new_failed:
            return [Change("answered", outcome(old), outcome(new))]
        if _error_kind(old) != _error_kind(new):
            return [Change("error", outcome(old), outcome(new), message=_message(new))]
        return []
    changes = []
    if old.get("status_code") != new.get("status_code"):
        changes.append(Change("status", old.get("status_code"), new.get("status_code")))
    url_changed = old.get("url") != new.get("url")
    if url_changed:
        changes.append(Change("url", old.get("url"), new.get("url")))
    changes.extend(_header_changes(old, new, options.headers))
    if old.get("host_ip") != new.get("host_ip"):
        changes.append(Change("address", old.get("host_ip"), new.get("host_ip")))
    if (old.get("redirects") or []) != (new.get("redirects") or []):
        changes.append(Change("redirects", old.get("redirects") or [], new.get("redirects") or []))
    old_final, new_final = old.get("final_url"), new.get("final_url")
    # Without redirects the final URL is the URL: a changed URL already says it.
    redirected = old_final != old.get("url") or new_final != new.get("url")
    if old_final != new_final and (redirected or not url_changed):
        changes.append(Change("final-url", old_final, new_final))
    if "tls" in old and "tls" in new:
        changes.extend(_tls_changes(_cert(old), _cert(new), options.expiry_days))
    if "audit" in old and "audit" in new and _grade(old) != _grade(new):
        changes.append(Change("grade", _audit(old), _audit(new)))
    return changes


def _header_changes(
    old: dict[str, Any], new: dict[str, Any], policy: HeaderPolicy
) -> Iterator[Change]:
    before, after = policy.facet(old.get("headers")), policy.facet(new.get("headers"))
    for name, values in after.items():
        was = before.get(name)
        if was is None:
            yield Change("header-added", None, list(values), name=name)
        elif was != values:
            yield Change("header-changed", list(was), list(values), name=name)
    for name, values in before.items():
        if name not in after:
            yield Change("header-removed", list(values), None, name=name)


def _tls_changes(
    old: dict[str, Any] | None, new: dict[str, Any] | None, days: int
) -> Iterator[Change]:
    def summary(cert: dict[str, Any] | None) -> dict[str, Any] | None:
        return {"sha256": cert.get("sha256"), "not_after": cert.get("not_after")} if cert else None

    if (old or {}).get("sha256") != (new or {}).get("sha256"):
        yield Change("certificate", summary(old), summary(new))
    if _expiring(new, days) and not _expiring(old, days):
        yield Change("expiring", (old or {}).get("days_left"), (new or {}).get("days_left"))


def _audit(record: dict[str, Any]) -> dict[str, Any] | None:
    audit = record.get("audit")
    if type(audit) is not dict:
        return None
    return {"grade": audit.get("grade"), "score": audit.get("score")}


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One line -> its record, or None if it is not one (not JSON, not an object, no input)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # orjson refuses lone surrogates, which the stdlib writes as \udXXX escapes
            record = json.loads(line)
        except ValueError:
            return None
    if type(record) is not dict or not isinstance(record.get("input"), str):
        return None
    return record


@dataclass(slots=True)
class Tally:
    """What reading one file found besides its records."""

    records: int = 0
    duplicates: int = 0  # records of a target already recorded earlier in the file
    malformed: int = 0  # lines that are not records
    first_malformed: int = 0  # its line number
    torn: bool = False  # the last line is a record cut short (a run that was killed)

    def note_malformed(self, line_number: int) -> None:
        self.malformed += 1
        if not self.first_malformed:
            self.first_malformed = line_number


Entries = dict[int, "int | dict[int, int]"]


class Side:
    """One file: opened once, indexed once, its changed records read again by offset."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise DiffError(f"cannot read {path}: {exc.strerror or exc}") from None
        self._handle = handle
        try:
            status = os.fstat(handle.fileno())
        except OSError as exc:  # pragma: no cover - fstat of an open file does not fail
            handle.close()
            raise DiffError(f"cannot read {path}: {exc.strerror}") from None
        if not stat.S_ISREG(status.st_mode):
            handle.close()
            raise DiffError(f"{path}: not a regular file (diff reads records twice, by offset)")
        if status.st_size >= MAX_FILE_SIZE:
            handle.close()
            raise DiffError(f"{path}: larger than {MAX_FILE_SIZE >> 40} TiB")
        self.entries: Entries = {}
        self.tally = Tally()

    def close(self) -> None:
        self._handle.close()

    def fileno(self) -> int:
        return self._handle.fileno()

    def index(self, options: Options) -> None:
        """Read every record once; keep input digest -> packed (digest, port, offset)."""
        add = self._add
        for key, packed in self._scan(options):
            add(key, packed)

    def _add(self, key: int, packed: int) -> None:
        entries = self.entries
        port = packed >> PORT_SHIFT & _PORT_MASK
        existing = entries.get(key)
        if existing is None:
            entries[key] = packed
        elif isinstance(existing, int):
            existing_port = existing >> PORT_SHIFT & _PORT_MASK
            if existing_port == port:
                self.tally.duplicates += 1
                entries[key] = packed
            else:
                entries[key] = {existing_port: existing, port: packed}
        else:
            if port in existing:
                self.tally.duplicates += 1
            existing[port] = packed

    def _scan(self, options: Options) -> Iterator[tuple[int, int]]:
        """(input digest, packed entry) for every record, in file order; counts the rest."""
        tally = self.tally
        readline = self._handle.readline
        offset = line_number = probed = 0
        while True:
            line = readline(MAX_LINE)
            if not line:
                break
            start = offset
            offset += len(line)
            line_number += 1
            if line[-1] != 10:  # no newline: the last line, or a line too long to be a record
                if len(line) == MAX_LINE:
                    offset += self._skip_line()
                    tally.note_malformed(line_number)
                    continue
                if line.isspace():
                    break
                record = parse_line(line)
                if record is None and line.lstrip().startswith(b"{"):
                    tally.torn = True
                    break
            else:
                record = parse_line(line)
            packed = None
            if record is not None:
                try:
                    given = record.get("port")
                    port = given if isinstance(given, int) and 0 < given <= _PORT_MASK else 0
                    packed = digest(record, options) << DIGEST_SHIFT | port << PORT_SHIFT | start
                    key = hash(record["input"]) & _DIGEST_MASK
                except (TypeError, AttributeError):  # JSON, but not shaped as our records
                    packed = None
            if packed is None:
                if line.isspace():  # a blank line: checked only here, off the hot path
                    continue
                tally.note_malformed(line_number)
                if not tally.records:
                    probed += 1
                    if probed >= PROBE_LINES:
                        break
                continue
            tally.records += 1
            yield key, packed
        if tally.malformed and not tally.records:
            raise DiffError(f"{self.path}: not afetch JSON Lines (no record in its first lines)")

    def write_index(self, options: Options, out: BinaryIO) -> None:
        """What `index` would keep, as flat arrays on `out`: the work of a child process."""
        keys, highs, lows = array("Q"), array("Q"), array("Q")
        try:
            for key, packed in self._scan(options):
                keys.append(key)
                highs.append(packed >> 64)
                lows.append(packed & _LOW_MASK)
            header = {"tally": asdict(self.tally), "count": len(keys)}
        except DiffError as exc:
            header = {"error": str(exc)}
        except OSError as exc:
            header = {"error": f"cannot read {self.path}: {exc.strerror or exc}"}
        data = orjson.dumps(header)
        out.write(len(data).to_bytes(8, "little") + data)
        for column in (keys, highs, lows):
            column.tofile(out)
        out.flush()

    def read_index(self, source: BinaryIO) -> None:
        """Load what `write_index` wrote, as `index` would have built it."""
        header = orjson.loads(source.read(int.from_bytes(source.read(8), "little")))
        if "error" in header:
            raise DiffError(header["error"])
        count = header["count"]
        columns = []
        for _ in range(3):
            column = array("Q")
            column.fromfile(source, count)
            columns.append(column)
        self.tally = Tally(**header["tally"])  # duplicates are counted as entries are added
        add = self._add
        for key, high, low in zip(*columns, strict=True):
            add(key, high << 64 | low)

    def _skip_line(self) -> int:
        """Read past the rest of an overlong line; return the bytes skipped."""
        skipped = 0
        while True:
            chunk = self._handle.readline(MAX_LINE)
            skipped += len(chunk)
            if not chunk or chunk[-1] == 10:
                return skipped

    def record(self, packed: int) -> dict[str, Any]:
        """The record an index entry points at."""
        self._handle.seek(packed & _OFFSET_MASK)
        record = parse_line(self._handle.readline(MAX_LINE))
        if record is None:  # the file changed under us
            raise DiffError(f"{self.path}: changed while being read")
        return record


@dataclass(frozen=True, slots=True)
class TargetDiff:
    """The changes of one target: what text lines and JSON objects are made of."""

    label: str
    record: dict[str, Any]  # the newer record (the older one for a target that disappeared)
    changes: list[Change]

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "input": record["input"],
            "port": record.get("port"),
            "url": record.get("url"),
            "changes": [change.as_dict() for change in self.changes],
        }


@dataclass(slots=True)
class Summary:
    """The counts --stats prints."""

    changed: int = 0
    appeared: int = 0
    disappeared: int = 0
    unchanged: int = 0

    def add(self, found: TargetDiff) -> None:
        if found.changes[0].kind == "appeared":
            self.appeared += 1
        elif found.changes[0].kind == "disappeared":
            self.disappeared += 1
        else:
            self.changed += 1


def _port_of(packed: int) -> int:
    return packed >> PORT_SHIFT & _PORT_MASK


def _label(record: dict[str, Any], by_port: bool) -> str:
    """The input line; with several records per input (--ports), host:port as afetch shows it."""
    host, port = record.get("host"), record.get("port")
    if not by_port or not isinstance(host, str) or port is None:
        return str(record["input"])
    path = record.get("path")
    host_port = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host_port + (path if isinstance(path, str) and path != "/" else "")


def compare(old: Side, new: Side, options: Options) -> Iterator[TargetDiff | None]:
    """Every target of both files, in NEW's order then OLD's leftovers: its changes, or None
    for an unchanged target. Consumes OLD's index."""
    remaining = old.entries
    for key, after in new.entries.items():
        before = remaining.pop(key, None)
        if isinstance(after, int) and not isinstance(before, dict):
            if before is not None and before >> DIGEST_SHIFT == after >> DIGEST_SHIFT:
                yield None  # the common case, without a call
            else:
                yield _pair(old, new, before, after, False, options)
            continue
        # Several records for this input on one side at least (--ports): match port by port.
        afters = after if isinstance(after, dict) else {_port_of(after): after}
        befores: dict[int, int] = {}
        if isinstance(before, dict):
            befores = before
        elif before is not None:
            befores = {_port_of(before): before}
        for port, packed in afters.items():
            yield _pair(old, new, befores.pop(port, None), packed, True, options)
        for packed in befores.values():
            yield _gone(old, packed, True)
    for before in remaining.values():
        if isinstance(before, dict):
            for packed in before.values():
                yield _gone(old, packed, True)
        else:
            yield _gone(old, before, False)


def _pair(
    old: Side, new: Side, before: int | None, after: int, by_port: bool, options: Options
) -> TargetDiff | None:
    if before is None:
        record = new.record(after)
        change = Change("appeared", None, outcome(record), message=_message(record))
        return TargetDiff(_label(record, by_port), record, [change])
    if before >> DIGEST_SHIFT == after >> DIGEST_SHIFT:
        return None
    record = new.record(after)
    changes = describe(old.record(before), record, options)
    return TargetDiff(_label(record, by_port), record, changes) if changes else None


def _gone(old: Side, packed: int, by_port: bool) -> TargetDiff:
    record = old.record(packed)
    change = Change("disappeared", outcome(record), None)
    return TargetDiff(_label(record, by_port), record, [change])


# Text output ---------------------------------------------------------------------------------

_COLOURS = {"added": "\x1b[32m", "removed": "\x1b[31m", "changed": "\x1b[33m"}
_RESET = "\x1b[0m"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _chain(redirects: Any) -> str:
    if not redirects or not isinstance(redirects, list):
        return _show(redirects or None)
    hops = [
        f"{hop.get('status_code')} {hop.get('location')}" if isinstance(hop, dict) else str(hop)
        for hop in redirects
    ]
    return " > ".join(hops)


def _cert_text(cert: dict[str, Any] | None) -> str:
    if not cert:
        return "none"
    return f"{str(cert.get('sha256'))[:16]} (until {cert.get('not_after')})"


def _grade_text(audit: dict[str, Any] | None) -> str:
    if not audit:
        return "none"
    score = audit.get("score")
    return f"{audit.get('grade')}" + (f" ({score})" if score is not None else "")


def detail(change: Change) -> str:
    """What a text line says after the kind (unescaped)."""
    kind, old, new = change.kind, change.old, change.new
    tail = f": {change.message}" if change.message else ""
    if kind == "appeared":
        return f"{_show(new)}{tail}"
    if kind == "disappeared":
        return _show(old)
    if kind.startswith("header-"):
        if kind == "header-added":
            return f"{change.name}: {_show(new)}"
        if kind == "header-removed":
            return f"{change.name}: {_show(old)}"
        return f"{change.name}: {_show(old)} -> {_show(new)}"
    if kind == "redirects":
        return f"{_chain(old)} -> {_chain(new)}"
    if kind == "certificate":
        return f"{_cert_text(old)} -> {_cert_text(new)}"
    if kind == "expiring":
        return f"{_show(new)} days left (was {_show(old)})"
    if kind == "grade":
        return f"{_grade_text(old)} -> {_grade_text(new)}"
    return f"{_show(old)} -> {_show(new)}{tail}"


def format_text(found: TargetDiff, colour: bool = False) -> str:
    """One line per change: `<label> <kind> > <old> -> <new>`; server bytes escaped."""
    label = escape(found.label)
    lines = []
    for change in found.changes:
        kind = change.kind
        if colour:
            tone = "added" if kind in _ADDED else "removed" if kind in _REMOVED else "changed"
            kind = f"{_COLOURS[tone]}{kind}{_RESET}"
        lines.append(f"{label} {kind} > {escape(detail(change))}\n")
    return "".join(lines)


def format_json(found: TargetDiff) -> str:
    """One JSON object per changed target, ASCII only (as afetch's records)."""
    return json_line(found.as_dict())


# The command --------------------------------------------------------------------------------


def _warn(message: str) -> None:
    click.echo(f"afetch diff: {message}", err=True)


def _report(side: Side) -> None:
    tally = side.tally
    if tally.torn:
        _warn(f"{side.path}: torn last line ignored (a run cut short?)")
    if tally.malformed:
        lines = "line is" if tally.malformed == 1 else "lines are"
        _warn(f"{side.path}: {tally.malformed} {lines} not records, skipped (first: line "
              f"{tally.first_malformed})")  # fmt: skip
    if tally.duplicates:
        _warn(f"{side.path}: {tally.duplicates} records repeat an earlier target's; "
              f"the last of each is compared")  # fmt: skip


def _index_both(old: Side, new: Side, options: Options) -> None:
    """Index both files: NEW in a forked child at the same time when that pays and is safe
    (fork exists, no other thread could hold a lock the child needs, files big enough). The
    child inherits this process's hash seed, so its digests are this process's digests."""
    parallel = (
        hasattr(os, "fork")
        and threading.active_count() == 1
        and os.fstat(new.fileno()).st_size >= PARALLEL_MIN_BYTES
    )
    if not parallel:
        old.index(options)
        new.index(options)
        return
    with tempfile.TemporaryFile() as scratch:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: its work is write_index, tested alone
            status = 1
            try:
                new.write_index(options, scratch)
                status = 0
            finally:
                os._exit(status)
        try:
            old.index(options)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"indexing {new.path} in a child process failed ({status})")
        scratch.seek(0)
        new.read_index(scratch)


def run(
    old_path: str,
    new_path: str,
    options: Options,
    *,
    out: IO[bytes],
    as_json: bool = False,
    colour: bool = False,
    stats: bool = False,
) -> DiffExit:
    """Compare two files and write the changes to `out`; the exit status as diff(1)'s."""
    old = Side(old_path)
    try:
        new = Side(new_path)
    except DiffError:
        old.close()
        raise
    try:
        _index_both(old, new, options)
        _report(old)
        _report(new)
        summary = Summary()
        pending: list[bytes] = []
        size = 0
        for found in compare(old, new, options):
            if found is None:
                summary.unchanged += 1
                continue
            summary.add(found)
            text = format_json(found) if as_json else format_text(found, colour)
            pending.append(text.encode("utf-8"))
            size += len(pending[-1])
            if size >= 64 * 1024:
                out.write(b"".join(pending))
                pending.clear()
                size = 0
        out.write(b"".join(pending))
        out.flush()
    finally:
        old.close()
        new.close()
    if stats:
        _warn(
            f"{old.tally.records} old, {new.tally.records} new records: {summary.changed} "
            f"changed, {summary.appeared} appeared, {summary.disappeared} disappeared, "
            f"{summary.unchanged} unchanged"
        )
    differs = summary.changed or summary.appeared or summary.disappeared
    return DiffExit.CHANGED if differs else DiffExit.SAME


def wants_colour(choice: str, stream: Any, environ: dict[str, str] | None = None) -> bool:
    """--color: always, never, or auto (a terminal, and NO_COLOR unset)."""
    if choice != "auto":
        return choice == "always"
    environ = dict(os.environ) if environ is None else environ
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not environ.get("NO_COLOR")


@click.command(
    "diff",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Show what changed between two afetch JSON Lines files, target by target.\n\n"
    "Exit status: 0 no change, 1 changes, 2 trouble.",
)
@click.argument("old", metavar="OLD.jsonl")
@click.argument("new", metavar="NEW.jsonl")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per changed target.")
@click.option(
    "--ignore-header",
    "ignore",
    multiple=True,
    metavar="NAME",
    help="Also ignore this header (repeatable; globs like 'x-*').",
)
@click.option(
    "--only-header",
    "only",
    multiple=True,
    metavar="NAME",
    help="Compare only this header (repeatable; '*' = all, volatile ones included).",
)
@click.option(
    "--expiry-days",
    type=click.IntRange(min=0),
    metavar="DAYS",
    default=DEFAULT_EXPIRY_DAYS,
    show_default=True,
    help="A certificate with this many days left is expiring.",
)
@click.option(
    "--color",
    "--colour",
    "colour",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour the change kinds.",
)
@click.option("--stats", is_flag=True, help="Print the counts on stderr at the end.")
def diff_command(**options: Any) -> None:
    """Click callback: exits with diff(1)'s status, standalone or under main()."""
    click.get_current_context().exit(_diff(**options))


def _diff(
    old: str,
    new: str,
    as_json: bool,
    ignore: tuple[str, ...],
    only: tuple[str, ...],
    expiry_days: int,
    colour: str,
    stats: bool,
) -> int:
    options = Options(HeaderPolicy(ignore, only), expiry_days)
    stdout = sys.stdout.buffer
    try:
        return run(
            old,
            new,
            options,
            out=stdout,
            as_json=as_json,
            colour=not as_json and wants_colour(colour, sys.stdout),
            stats=stats,
        )
    except DiffError as exc:
        _warn(f"error: {exc}")
        return DiffExit.TROUBLE
    except BrokenPipeError:  # `afetch diff ... | head`: the reader has seen changes
        _silence_stdout()
        return DiffExit.CHANGED
    except OSError as exc:  # a read error mid-file, a full disk under stdout
        _warn(f"error: {exc.strerror or exc}")
        return DiffExit.TROUBLE


def main(argv: Sequence[str] | None = None, prog_name: str = "afetch diff") -> int:
    """Entry point for `afetch diff ARGS` and `python -m fetcher.diff`: the exit status."""
    try:
        result = diff_command.main(list(argv) if argv is not None else None, prog_name,
                                   standalone_mode=False)  # fmt: skip
    except click.exceptions.Abort:
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        _warn(f"error: {exc.format_message()}")
        return DiffExit.TROUBLE
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("AFETCH_DEBUG"):
            raise
        _warn(f"internal error: {type(exc).__name__}: {exc}")
        return ExitCode.INTERNAL
    return result if isinstance(result, int) else 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush finds no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
