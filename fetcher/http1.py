"""HTTP/1.x as pure bytes: build a request, parse a response's status line and header section.

Nothing here touches a socket. `HeadParser.feed()` takes whatever bytes arrived and returns the
final response head once it is complete, or None to ask for more; it raises ProtocolError as soon
as the bytes cannot be HTTP/1.x or cross one of the limits below, so a hostile server costs at
most MAX_HEAD_BYTES of memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ProtocolError

# The whole header section of one response. Real responses with long Content-Security-Policy
# and Set-Cookie headers reach 20-40 KiB; curl allows 300 KiB and Go's http client 1 MiB, but
# we only keep headers, never bodies, so 256 KiB is generous and still bounds memory at
# concurrency 1000 to a quarter of a GiB in the worst case.
MAX_HEAD_BYTES = 256 * 1024
# One line (status line or header field). nginx's large_client_header_buffers default is 8 KiB
# and Apache's LimitRequestFieldSize 8190 bytes; a 64 KiB cookie or CSP line is the largest
# seen in practice. Anything longer is an attack or a body mistaken for headers.
MAX_LINE_BYTES = 64 * 1024
# Number of header fields. Apache refuses more than 100 in a request; big CDN responses carry
# around 40. 256 leaves room for every real server and stops a "thousands of headers" flood.
MAX_HEADERS = 256
# Interim (1xx) responses before the final one. A server sends 100 Continue or 103 Early Hints
# once or twice; more than this is a loop meant to keep us waiting.
MAX_INTERIM_RESPONSES = 8
# RFC 9110 section 15: "All valid status codes are within the range of 100 to 599, inclusive."
# A code outside it is no answer (h11 refuses one below 100 too).
STATUS_CODES = range(100, 600)
# The end of an incomplete head may be the first bytes of its blank line ("\r\n\r", at most
# 3) or of a line break ("\r"): the size and line limits are crossed only if crossed without
# them, so a head at a limit is accepted however its last bytes are split between reads.
_PARTIAL_END = 3
_PARTIAL_BREAK = 1

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?\Z", re.DOTALL)
# RFC 9110 token characters: what a field name may contain.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Every field line of a head at once, in C: (name, value) with the value's OWS stripped. `^`
# anchors each match at a line's start and neither group crosses a line, so a head whose
# matches are as many as its lines has every line well-formed; any other head (a fold, a bad
# name, an empty line) takes the line-by-line path, which names the fault. 9 -> 3 us for an
# nginx head of 8 fields, about 15% of the user CPU of a raw fetch (bench/micro.py).
_FIELDS = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\n]*[^ \t\n])?)[ \t]*\n", re.M)
_HTTP_PREFIX = b"HTTP/"
_OWS = b" \t"
_OBS_FOLD_STARTS = (b" ", b"\t")


@dataclass(slots=True)
class ResponseHead:
    """The part of a response afetch records: status line and header fields in received order."""

    http_version: str
    status_code: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def decode_field(raw: bytes) -> str:
    """Decode a header name or value: UTF-8 when it is valid, else Latin-1 (lossless)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def build_request(
    method: str,
    path: str,
    host: str,
    headers: Iterable[tuple[str, str]],
    http_version: str = "1.1",
) -> bytes:
    """Serialise a request with no body: Host first (RFC 9110 7.2), then `headers` in the given
    order. A Host field among `headers` (any case) replaces `host`, in that first place: two
    Host lines get a 400 from any server (RFC 9112 3.2)."""
    fields = list(headers)
    given = [field for field in fields if field[0].lower() == "host"]
    first = given[0] if given else ("Host", host)
    lines = [f"{method} {path} HTTP/{http_version}", f"{first[0]}: {first[1]}"]
    lines.extend(f"{name}: {value}" for name, value in fields if name.lower() != "host")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class HeadParser:
    """Incremental parser for the head of one HTTP/1.x response, skipping 1xx interim heads.

    Work per feed is proportional to the new bytes, so a server dripping one byte at a time
    costs no more than one sending the head at once.
    """

    __slots__ = ("_buf", "_scanned", "_line_start", "_newlines", "interim")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.interim: list[ResponseHead] = []
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._scanned = 0  # bytes of _buf already searched for the end of the head
        self._line_start = 0  # where the last, still incomplete, line begins
        self._newlines = 0  # line breaks seen in the current head

    def feed(self, data: bytes) -> ResponseHead | None:
        """Add bytes; return the final response head once complete, else None."""
        if not self._buf and data.startswith(b"HTTP/1."):
            # The usual case: a whole final head in the first read. No copying into the buffer.
            blank = data.find(b"\r\n\r\n")
            if blank != -1 and data[9:10] != b"1":  # the status code does not start with 1
                try:
                    return parse_head(data[:blank])
                except ProtocolError:
                    # Maybe the head ended earlier, at a blank line with a bare LF ("\n\n",
                    # "\n\r\n"): the head parsed above then holds an empty line, which fails.
                    # The general path below finds that end and gives the verdict, as it would
                    # with these bytes split across reads.
                    pass
        buf = self._buf
        buf += data
        while True:
            if not _HTTP_PREFIX.startswith(bytes(buf[:5])):
                raise ProtocolError(f"not an HTTP response: {bytes(buf[:24])!r}", "read")
            end = _HEAD_END.search(buf, max(0, self._scanned - 3))
            if end is None:
                self._check_incomplete()
                return None
            head = parse_head(bytes(buf[: end.start()]))
            del buf[: end.end()]
            self._reset_scan()
            if not 100 <= head.status_code < 200 or head.status_code == 101:
                return head
            self.interim.append(head)
            if len(self.interim) > MAX_INTERIM_RESPONSES:
                raise ProtocolError(
                    f"more than {MAX_INTERIM_RESPONSES} interim 1xx responses", "read"
                )
            if not buf:
                return None

    def feed_eof(self) -> None:
        """The peer closed the connection before the head was complete."""
        if self._buf or self.interim:
            raise ProtocolError("connection closed in the middle of the header section", "read")

    @property
    def received(self) -> int:
        """Bytes of the current, incomplete head held so far."""
        return len(self._buf)

    def _check_incomplete(self) -> None:
        buf = self._buf
        self._newlines += buf.count(b"\n", self._scanned)
        last_break = buf.rfind(b"\n", self._scanned)
        if last_break != -1:
            self._line_start = last_break + 1
        self._scanned = len(buf)
        if len(buf) - _PARTIAL_END > MAX_HEAD_BYTES:
            raise ProtocolError(f"header section larger than {MAX_HEAD_BYTES} bytes", "read")
        if len(buf) - self._line_start - _PARTIAL_BREAK > MAX_LINE_BYTES:
            raise ProtocolError(f"header line longer than {MAX_LINE_BYTES} bytes", "read")
        if self._newlines > MAX_HEADERS + 1:
            raise ProtocolError(f"more than {MAX_HEADERS} header fields", "read")


def parse_head(head: bytes) -> ResponseHead:
    """Parse a complete head (status line and fields, without the blank line that ends it)."""
    if len(head) > MAX_HEAD_BYTES:
        raise ProtocolError(f"header section larger than {MAX_HEAD_BYTES} bytes", "read")
    if b"\0" in head:
        raise ProtocolError("NUL byte in the header section", "read")
    # Whole-buffer checks run in C; the per-line loop below only splits and decodes.
    text = head.replace(b"\r\n", b"\n")
    if b"\r" in text:
        raise ProtocolError("bare CR in the header section", "read")
    status_line, newline, block = text.partition(b"\n")
    count = block.count(b"\n") + 1 if newline else 0  # field lines, empty ones included
    if count > MAX_HEADERS:
        raise ProtocolError(f"more than {MAX_HEADERS} header fields", "read")
    # No line can be longer than the head: the split is needed only for a head that long.
    if len(text) > MAX_LINE_BYTES and max(map(len, text.split(b"\n"))) > MAX_LINE_BYTES:
        raise ProtocolError(f"header line longer than {MAX_LINE_BYTES} bytes", "read")

    match = _STATUS_LINE.match(status_line)
    if match is None:
        raise ProtocolError(f"malformed status line: {status_line[:80]!r}", "read")
    major, minor, code, reason = match.groups()
    if major != b"1":
        raise ProtocolError(f"unsupported HTTP version {major.decode()}.{minor.decode()}", "read")
    status = int(code)
    if status not in STATUS_CODES:
        raise ProtocolError(f"status code {code.decode()} outside 100-599", "read")
    result = ResponseHead(f"1.{minor.decode()}", status, decode_field(reason or b""))
    if count:
        try:
            fields = _FIELDS.findall(block.decode("utf-8") + "\n")
        except UnicodeDecodeError:  # a Latin-1 field: each one decoded on its own, below
            fields = []
        if len(fields) == count:
            result.headers = fields
        else:
            _parse_fields(block.split(b"\n"), result.headers)
    return result


def _parse_fields(lines: list[bytes], fields: list[tuple[str, str]]) -> None:
    """Field lines one by one: the general path, for folds, Latin-1 values and the errors."""
    token = _TOKEN.match
    for line in lines:
        if line[:1] in _OBS_FOLD_STARTS:
            # obs-fold (RFC 9112 section 5.2): a continuation of the previous value.
            if not fields:
                raise ProtocolError("header section starts with a folded line", "read")
            name, value = fields[-1]
            fields[-1] = (name, value + " " + decode_field(line.strip(_OWS)))
            continue
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not token(raw_name):
            raise ProtocolError(f"malformed header line: {line[:80]!r}", "read")
        fields.append((raw_name.decode("ascii"), decode_field(raw_value.strip(_OWS))))
