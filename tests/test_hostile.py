"""Hostile servers: each ends in one record of the stated kind, within the deadline, with memory
bounded by the parser's limits. Runs on every backend (see the backend_name fixture)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import FetchOne, collect, make_config

from fetcher.http1 import MAX_HEADERS, MAX_LINE_BYTES
from fetcher.loopback import LoopbackHosts, Script, drips, read_request, replies, response
from fetcher.output import format_jsonl, format_text

OK = response("200 OK")
DEADLINE = 1.0
MARGIN = 4.0  # seconds over the deadline a noisy machine may take before a test calls it a hang


def streams(prefix: bytes, chunk: bytes, total: int) -> Script:
    """Send `prefix`, then `chunk` repeatedly until `total` bytes or the client leaves."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(prefix)
        sent = 0
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    return script


def timed(fetch: FetchOne, line: str, **options: object) -> tuple[str | None, float]:
    started = time.monotonic()
    result = fetch(line, timeout=DEADLINE, **options)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, f"took {elapsed:.1f} s: past the deadline"
    return (result.error.kind if result.error else None), elapsed


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        pytest.param(
            streams(b"HTTP/1.1 200 OK\r\n", b"X-More: yes\r\n", 50_000_000),
            "protocol-error",
            id="endless-header-section",
        ),
        pytest.param(
            streams(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 65536, 10_000_000),
            "protocol-error",
            id="10MB-header-line",
        ),
        pytest.param(
            replies(b"HTTP/1.1 200 OK\r\n" + b"X-N: 1\r\n" * 5000 + b"\r\n"),
            "protocol-error",
            id="thousands-of-headers",
        ),
        pytest.param(replies(b"SSH-2.0-OpenSSH_9.6p1\r\n"), "protocol-error", id="ssh-banner"),
        pytest.param(
            replies(b"220 mx.example ESMTP Postfix\r\n", wait_for_request=False),
            "protocol-error",
            id="smtp-banner",
        ),
        pytest.param(replies(b"<html>hello</html>\n"), "protocol-error", id="http09-body"),
        pytest.param(
            replies(b"\x15\x03\x03\x00\x02\x02\x32"), "protocol-error", id="tls-bytes-on-http"
        ),
        pytest.param(
            replies(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n"), "protocol-error", id="nul-in-header"
        ),
        pytest.param(
            replies(b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"), "protocol-error", id="bare-cr"
        ),
        pytest.param(
            streams(b"", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 1_000_000),
            "protocol-error",
            id="endless-1xx",
        ),
        pytest.param(drips(OK, 0.2), "timeout", id="drip-one-byte-at-a-time"),
    ],
)
def test_hostile_server_ends_in_one_typed_record(
    hosts: LoopbackHosts, fetch: FetchOne, script: Script, kind: str
) -> None:
    port = hosts.serve(script)
    got, _ = timed(fetch, f"127.0.0.1:{port}")
    assert got == kind


def test_one_early_hint_then_the_real_answer(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK))
    result = fetch(f"127.0.0.1:{port}")
    assert result.status_code == 200


@pytest.mark.parametrize("status", [b"000 Zero", b"099 Low", b"600 High", b"999 Max"])
def test_status_codes_outside_100_to_599_are_a_protocol_error(
    hosts: LoopbackHosts, fetch: FetchOne, status: bytes
) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n"))
    result = fetch(f"127.0.0.1:{port}")
    assert result.status_code is None and result.error is not None
    assert (result.error.kind, result.error.phase) == ("protocol-error", "read")
    assert "outside 100-599" in result.error.message


def test_status_code_599_is_an_answer(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n"))
    assert fetch(f"127.0.0.1:{port}").status_code == 599


def test_bare_lf_head_with_a_body_holding_crlf_crlf(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 200 OK\nA: b\n\nbody\r\n\r\nmore"))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is None and result.headers == [("A", "b")]


MALFORMED_LOCATIONS = [b"http://[bad", b"http://a]b/", b"//[::1/x", b"https://[0:0:0:0:0:0:0:1"]


def redirects_to(location: bytes) -> Script:
    """A 302 to `location`, sent without waiting for a request: under --scheme auto the TLS
    handshake gets this plain HTTP and fails, and the http retry gets the redirect."""
    reply = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    return replies(reply, wait_for_request=False)


@pytest.mark.parametrize("location", MALFORMED_LOCATIONS)
@pytest.mark.parametrize("scheme", ["http", "auto"])
def test_a_malformed_location_is_a_protocol_error_in_the_redirect_phase(
    hosts: LoopbackHosts, fetch: FetchOne, location: bytes, scheme: str
) -> None:
    port = hosts.serve(redirects_to(location))
    result = fetch(f"127.0.0.1:{port}", follow_redirects=True, scheme=scheme)
    assert result.error is not None, result.to_record()
    assert (result.error.kind, result.error.phase) == ("protocol-error", "redirect")
    assert result.final_url == f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("location", MALFORMED_LOCATIONS)
def test_a_malformed_location_not_followed_is_an_answer(
    hosts: LoopbackHosts, fetch: FetchOne, location: bytes
) -> None:
    port = hosts.serve(redirects_to(location))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is None and result.status_code == 302
    assert ("Location", location.decode()) in result.headers


def test_limits_are_named_constants() -> None:
    assert MAX_HEADERS < 5000 and MAX_LINE_BYTES < 10_000_000


def test_escape_sequences_are_kept_in_json_and_escaped_in_text(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"X-Title: \x1b]0;owned\x07\r\n"
        b"X-Csi: \x1b[2J\r\n"
        b"X-Latin1: caf\xe9\r\n"
        b"X-Folded: one\r\n two\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    port = hosts.serve(replies(head))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is None
    record = json.loads(format_jsonl(result))
    assert record["headers"]["x-title"] == ["\x1b]0;owned\x07"]
    assert record["headers"]["x-csi"] == ["\x1b[2J"]
    assert record["headers"]["x-latin1"] == ["café"]
    assert record["headers"]["x-folded"] == ["one two"]
    text = format_text(result)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned\\x07" in text


def test_the_rest_of_the_run_is_unaffected(hosts: LoopbackHosts, backend_name: str) -> None:
    flood = hosts.serve(streams(b"HTTP/1.1 200 OK\r\n", b"X-More: yes\r\n", 50_000_000))
    huge = hosts.serve(streams(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 65536, 10_000_000))
    good = hosts.serve(replies(OK))
    lines = [f"127.0.0.1:{flood}", f"127.0.0.1:{huge}"] * 5 + [
        f"127.0.0.1:{good}/{i}" for i in range(40)
    ]
    config = make_config(backend=backend_name, timeout=DEADLINE, concurrency=20)

    kinds = [r.error.kind if r.error else None for r in collect(lines, config)]
    assert len(kinds) == len(lines)
    assert kinds.count(None) == 40
    assert kinds.count("protocol-error") == 10
