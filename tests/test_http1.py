"""The pure parser, fed scripted byte chunks: no sockets anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.errors import ProtocolError
from fetcher.http1 import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_INTERIM_RESPONSES,
    MAX_LINE_BYTES,
    HeadParser,
    ResponseHead,
    build_request,
    parse_head,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"


def feed_all(chunks: list[bytes]) -> ResponseHead:
    parser = HeadParser()
    results = [parser.feed(chunk) for chunk in chunks]
    assert all(r is None for r in results[:-1])
    head = results[-1]
    assert head is not None
    return head


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([OK], id="one-chunk"),
        pytest.param([OK + b"<html>body</html>"], id="with-body"),
        pytest.param(split_every(OK, 1), id="one-byte-at-a-time"),
        pytest.param(split_every(OK, 7), id="split-lines"),
        pytest.param(
            [OK[: OK.index(b"\r\n\r\n") + 1], OK[OK.index(b"\r\n\r\n") + 1 :]],
            id="split-inside-terminator",
        ),
        pytest.param([OK.replace(b"\r\n", b"\n")], id="bare-lf"),
        pytest.param(split_every(OK.replace(b"\r\n", b"\n"), 3), id="bare-lf-split"),
    ],
)
def test_complete_heads(chunks: list[bytes]) -> None:
    head = feed_all(chunks)
    assert (head.http_version, head.status_code, head.reason) == ("1.1", 200, "OK")
    assert head.headers == [
        ("Content-Type", "text/html"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_interim_responses_are_skipped() -> None:
    parser = HeadParser()
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    assert parser.feed(data) is None
    head = parser.feed(b"HTTP/1.1 200 OK\r\n\r\n")
    assert head is not None and head.status_code == 200
    assert [h.status_code for h in parser.interim] == [100, 103]


def test_endless_interim_responses_are_refused() -> None:
    parser = HeadParser()
    with pytest.raises(ProtocolError, match="interim"):
        for _ in range(MAX_INTERIM_RESPONSES + 1):
            parser.feed(b"HTTP/1.1 103 Early Hints\r\n\r\n")


def test_switching_protocols_is_final() -> None:
    head = feed_all([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"])
    assert head.status_code == 101


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP response", id="ssh-banner"),
        pytest.param(b"220 mail.example ESMTP\r\n", "not an HTTP response", id="smtp-banner"),
        pytest.param(b"<html><body>hi", "not an HTTP response", id="http09-body"),
        pytest.param(b"\x15\x03\x01\x00\x02\x02\x46", "not an HTTP response", id="tls-alert"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line", id="bad-status"),
        pytest.param(b"HTTP/1.1 OK\r\n\r\n", "malformed status line", id="no-code"),
        pytest.param(b"HTTP/2.0 200 OK\r\n\r\n", "unsupported HTTP version", id="http2-text"),
        pytest.param(b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "malformed header", id="no-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nA b: c\r\n\r\n", "malformed header", id="space-name"),
        pytest.param(b"HTTP/1.1 200 OK\r\nA : c\r\n\r\n", "malformed header", id="ws-before-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n", "NUL", id="nul"),
        pytest.param(b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "bare CR", id="bare-cr"),
        pytest.param(b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "folded", id="fold-first"),
    ],
)
def test_garbage_is_a_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        HeadParser().feed(data)
    assert info.value.kind == "protocol-error"
    assert info.value.phase == "read"


def test_garbage_is_detected_from_the_first_bytes() -> None:
    parser = HeadParser()
    assert parser.feed(b"HT") is None  # still could be HTTP
    with pytest.raises(ProtocolError):
        parser.feed(b"X")


def test_obs_fold_joins_with_a_space() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\n\tthree")
    assert head.headers == [("X-Long", "one two three")]


def test_missing_reason_and_http10() -> None:
    head = parse_head(b"HTTP/1.0 204")
    assert (head.http_version, head.status_code, head.reason, head.headers) == ("1.0", 204, "", [])


def test_values_keep_non_utf8_bytes_and_controls_faithfully() -> None:
    head = parse_head(
        b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\nX-Esc: \x1b]0;pwned\x07\r\nX-U: \xc3\xa9"
    )
    assert head.headers == [("X-Latin", "café"), ("X-Esc", "\x1b]0;pwned\x07"), ("X-U", "é")]


def test_header_section_limit_while_incomplete() -> None:
    parser = HeadParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError, match="header section larger"):
        for _ in range(MAX_HEAD_BYTES // 4000 + 2):
            parser.feed(b"X-Filler: " + b"a" * 3988 + b"\r\n")


def test_single_line_limit_stops_a_long_line_early() -> None:
    parser = HeadParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nX-Big: ")
    with pytest.raises(ProtocolError, match="line longer"):
        for _ in range(100):
            parser.feed(b"a" * 4096)
    assert parser.received <= MAX_LINE_BYTES + 4096 + 64


def test_header_count_limit() -> None:
    parser = HeadParser()
    with pytest.raises(ProtocolError, match="header fields"):
        parser.feed(b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * (MAX_HEADERS + 5))


def test_header_count_limit_on_a_complete_head() -> None:
    with pytest.raises(ProtocolError, match="header fields"):
        parse_head(b"HTTP/1.1 200 OK" + b"\r\nA: b" * (MAX_HEADERS + 1))


def test_complete_head_over_the_line_limit() -> None:
    with pytest.raises(ProtocolError, match="line longer"):
        parse_head(b"HTTP/1.1 200 OK\r\nA: " + b"b" * (MAX_LINE_BYTES + 1))


def test_eof_mid_head_is_a_protocol_error_and_eof_at_start_is_not() -> None:
    HeadParser().feed_eof()  # nothing received: the caller reports a connection error
    parser = HeadParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nA: b")
    with pytest.raises(ProtocolError, match="closed in the middle"):
        parser.feed_eof()


def test_build_request() -> None:
    request = build_request("HEAD", "/x?y=1", "example.com:8080", [("User-Agent", "afetch/1")])
    assert request == (
        b"HEAD /x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: afetch/1\r\n\r\n"
    )
    assert build_request("GET", "/", "h", [], "1.0").startswith(b"GET / HTTP/1.0\r\n")


@pytest.mark.parametrize("code", [b"000", b"099", b"600", b"999"])
def test_status_codes_outside_100_to_599_are_refused(code: bytes) -> None:
    with pytest.raises(ProtocolError, match="status code") as info:
        HeadParser().feed(b"HTTP/1.1 " + code + b" Odd\r\nA: b\r\n\r\n")
    assert info.value.phase == "read"


def test_status_codes_at_the_edges_of_the_range_are_answers() -> None:
    assert parse_head(b"HTTP/1.1 599 Edge").status_code == 599
    parser = HeadParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n") is None
    assert [head.status_code for head in parser.interim] == [100]


# --- any split of the same bytes, the same verdict ------------------------------------------

Verdict = tuple[ResponseHead | None, list[ResponseHead]] | tuple[str, str | None]


def verdict(chunks: list[bytes]) -> Verdict:
    """What the parser makes of `chunks` fed in order, then EOF: the final head (None if the
    peer closed before a byte) with the interim heads skipped, or the error's kind and phase.
    Messages may differ: "not an HTTP response" quotes the bytes received so far."""
    parser = HeadParser()
    try:
        for chunk in chunks:
            head = parser.feed(chunk)
            if head is not None:
                return head, parser.interim
        parser.feed_eof()
    except ProtocolError as exc:
        return exc.kind, exc.phase
    return None, parser.interim


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


LINE_ENDS = st.sampled_from([b"\r\n", b"\n"])
FIELD_NAMES = st.sampled_from([b"Location", b"Content-Length", b"Set-Cookie", b"X-A", b"A b"])
FIELD_VALUES = st.binary(max_size=12) | st.sampled_from([b"", b" v ", b"\r\n\r\n", b"a\nb"])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """A status line, fields and the blank line, with line ends mixed at random."""
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "]))
    code = draw(st.sampled_from([b"200", b"100", b"101", b"103", b"302", b"099", b"600", b"2"]))
    head = version + b" " + code + draw(st.sampled_from([b"", b" OK", b" \xe9"]))
    for name, value in draw(st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=4)):
        head += draw(LINE_ENDS) + name + b":" + value
    return head + draw(LINE_ENDS) + draw(LINE_ENDS)


RESPONSES = st.builds(
    lambda interim, final, body: b"".join(interim) + final + body,
    st.lists(heads(), max_size=2),
    heads(),
    st.binary(max_size=16) | st.sampled_from([b"\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"]),
)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64) | RESPONSES, cuts=st.lists(st.integers(0, 200), max_size=4))
def test_any_split_of_the_same_bytes_gets_the_same_verdict(data: bytes, cuts: list[int]) -> None:
    whole = verdict([data])
    assert verdict(splits(data, cuts)) == whole
    assert verdict(split_every(data, 1)) == whole


def test_one_read_with_a_bare_lf_head_and_a_crlf_blank_line_in_the_body() -> None:
    data = b"HTTP/1.1 200 OK\nA: b\n\nbody\r\n\r\n"
    head = feed_all([data])
    assert head.headers == [("A", "b")]
    assert verdict([data]) == verdict([data[:5], data[5:]])


def head_of(size: int) -> bytes:
    """A complete, valid head (without its blank line) of exactly `size` bytes."""
    head = b"HTTP/1.1 200 OK"
    filler = b"\r\nX-Filler: " + b"a" * 4000
    while len(head) + len(filler) + 8 <= size:
        head += filler
    return head + b"\r\nX-End: " + b"b" * (size - len(head) - 9)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(head_of(MAX_HEAD_BYTES), id="header-section-at-its-limit"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_LINE_BYTES - 3), id="line-at-its-limit"
        ),
    ],
)
def test_a_head_at_a_limit_is_accepted_however_its_end_is_split(head: bytes) -> None:
    data = head + b"\r\n\r\n"
    for cut in range(len(head) - 2, len(data)):
        parsed = verdict([data[:cut], data[cut:]])
        assert isinstance(parsed[0], ResponseHead), (cut - len(head), parsed)
    with pytest.raises(ProtocolError):  # and one byte more is refused
        HeadParser().feed(head + b"c\r\n\r\n")


# --- the fields matched at once, as line by line ------------------------------------------

TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FIELD_LINES = st.lists(
    st.builds(
        lambda lead, name, colon, value: lead + name + colon + value,
        st.sampled_from([b"", b"", b"", b" ", b"\t"]),  # a fold now and then
        st.sampled_from([b"Server", b"X-A", b"a", b"", b"A b", b"\xc3\xa9", b"n\x7f"]),
        st.sampled_from([b":", b":", b":", b"", b"::"]),
        st.binary(max_size=10).filter(
            lambda v: b"\r" not in v and b"\n" not in v and b"\0" not in v
        )
        | st.sampled_from([b" v ", b"\tv\t", b"  ", b"\xe9t\xe9", b"\xc3\xa9", b"a: b", b"x \t y"]),
    ),
    max_size=6,
)


def fields_line_by_line(lines: list[bytes]) -> list[tuple[str, str]] | None:
    """RFC 9112's reading of field lines, one at a time: the reference, None if refused."""

    def decode(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return None
            fields[-1] = (fields[-1][0], fields[-1][1] + " " + decode(line.strip(b" \t")))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or any(byte not in TOKEN for byte in name):
            return None
        fields.append((name.decode("ascii"), decode(value.strip(b" \t"))))
    return fields


@settings(max_examples=400, deadline=None)
@given(lines=FIELD_LINES, end=st.sampled_from([b"\r\n", b"\n"]))
def test_fields_read_at_once_are_the_fields_read_line_by_line(
    lines: list[bytes], end: bytes
) -> None:
    expected = fields_line_by_line(lines)
    head = end.join([b"HTTP/1.1 200 OK", *lines])
    if expected is None:
        with pytest.raises(ProtocolError, match="header"):
            parse_head(head)
    else:
        assert parse_head(head).headers == expected
