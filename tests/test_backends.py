"""Each backend against real scripted servers on 127.0.0.1 (see the backend_name fixture)."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FetchOne, collect, make_config

from fetcher.backends.httpx_backend import HttpxBackend
from fetcher.http1 import MAX_HEADERS, MAX_INTERIM_RESPONSES, ResponseHead
from fetcher.loopback import (
    LoopbackDNS,
    LoopbackHosts,
    Script,
    delayed,
    drips,
    read_request,
    recording,
    replies,
    response,
    silent,
)
from fetcher.models import Result, Trace
from fetcher.stream import fetch_all
from fetcher.targets import parse_target

OK = response(
    "200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
)


def test_normal_response(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(OK))
    result = fetch(f"127.0.0.1:{port}/path?q=1")
    assert result.error is None
    assert (result.status_code, result.reason, result.http_version) == (200, "OK", "1.1")
    assert result.headers_by_name()["set-cookie"] == ["a=1", "b=2"]
    assert result.host_ip == "127.0.0.1"
    record = result.to_record()
    assert record["url"] == f"http://127.0.0.1:{port}/path?q=1"
    assert record["timings_ms"]["total"] > 0
    assert record["timings_ms"]["connect"] is not None
    assert record["timings_ms"]["tls"] is None


def test_request_carries_method_host_and_user_agent(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    result = fetch(f"localhost:{port}/x", method="HEAD", headers=(("X-Extra", "1"),))
    assert result.status_code == 200
    request = seen[0].decode()
    assert request.startswith("HEAD /x HTTP/1.1\r\n")
    assert f"\r\nhost: localhost:{port}\r\n" in request.lower()
    assert "user-agent: afetch/" in request.lower()
    assert "x-extra: 1" in request.lower()


def test_redirect_is_reported_not_followed(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(response("301 Moved Permanently", [("Location", "/new")])))
    result = fetch(f"127.0.0.1:{port}/old")
    assert result.status_code == 301
    assert result.headers_by_name()["location"] == ["/new"]


def test_tls_verified_with_ca(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=server_tls)
    result = fetch(f"https://localhost:{port}/", cafile=ca_file)
    assert result.error is None and result.status_code == 200
    assert result.timings["tls"] > 0


def test_tls_untrusted_certificate(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext
) -> None:
    port = hosts.serve(replies(OK), tls=server_tls)
    result = fetch(f"https://localhost:{port}/")
    assert result.error is not None and result.error.kind == "tls-error"
    assert "certificate" in result.error.message


def test_tls_wrong_name(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=wrong_name_tls)
    result = fetch(f"https://localhost:{port}/", cafile=ca_file)
    assert result.error is not None and result.error.kind == "tls-error"


def test_insecure_skips_verification(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext
) -> None:
    port = hosts.serve(replies(OK), tls=wrong_name_tls)
    assert fetch(f"https://localhost:{port}/", verify=False).status_code == 200


def _answers_then_ignores(data: bytes) -> Script:
    """Answer, then read nothing more (a TLS close_notify goes unanswered) for a while."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()
        writer.transport.pause_reading()
        await asyncio.sleep(5)

    return script


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_connection_is_closed_when_the_fetch_returns(
    hosts: LoopbackHosts, backend_name: str, server_tls: ssl.SSLContext, ca_file: str, scheme: str
) -> None:
    """No connection outlives its fetch: not even a TLS goodbye the server never answers. One
    that did would hold a descriptor the concurrency limit no longer counts, and be cut off
    unclosed when the run's event loop ends."""
    tls = server_tls if scheme == "https" else None
    port = hosts.serve(_answers_then_ignores(OK), tls=tls)
    config = make_config(backend=backend_name, cafile=ca_file)
    sockets: list[Any] = []

    async def go() -> list[Result]:
        loop = asyncio.get_running_loop()
        create_connection, start_tls = loop.create_connection, loop.start_tls

        async def spy_connection(*args: Any, **kwargs: Any) -> Any:
            transport, protocol = await create_connection(*args, **kwargs)
            sockets.append(transport.get_extra_info("socket"))
            return transport, protocol

        async def spy_tls(*args: Any, **kwargs: Any) -> Any:
            transport = await start_tls(*args, **kwargs)
            sockets.append(transport.get_extra_info("socket"))
            return transport

        loop.create_connection, loop.start_tls = spy_connection, spy_tls  # type: ignore[method-assign]
        results = [result async for result in fetch_all([f"{scheme}://localhost:{port}/"], config)]
        await asyncio.sleep(0)  # the one loop iteration in which a dropped transport lets go
        assert sockets and all(sock.fileno() == -1 for sock in sockets)
        return results

    (result,) = asyncio.run(go())
    assert result.status_code == 200


def test_plain_http_on_https_target(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(OK, wait_for_request=False))
    result = fetch(f"https://127.0.0.1:{port}/", verify=False)
    assert result.error is not None and result.error.kind == "tls-error"


def test_refused(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    result = fetch(f"127.0.0.1:{hosts.refused()}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("connection-refused", "connect")


def test_dns_failure(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    # Asked of a DNS server on loopback that knows no names: tests never query a real one.
    port = hosts.serve_dns(LoopbackDNS({}))
    result = fetch("no-such-host.invalid", resolvers=(f"127.0.0.1:{port}",))
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("dns-error", "dns")


def test_silent_server_times_out_at_the_deadline(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(silent())
    started = time.monotonic()
    result = fetch(f"127.0.0.1:{port}", timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "read")
    assert "within 0.5 s" in result.error.message
    assert 0.4 < elapsed < 3.0


def test_dripping_server_cannot_outlast_the_total_deadline(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    port = hosts.serve(drips(OK, 0.05))  # ~5 s for the whole head, a byte every 50 ms
    started = time.monotonic()
    result = fetch(f"127.0.0.1:{port}", timeout=0.6)
    assert result.error is not None and result.error.kind == "timeout"
    # Each byte resets httpx's per-read timeout; only the engine's total deadline ends this.
    assert (result.error.phase, result.error.message) == (
        "read",
        "no response headers within 0.6 s",
    )
    assert time.monotonic() - started < 3.0


def test_slow_but_in_time(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(delayed(OK, 0.2))
    assert fetch(f"127.0.0.1:{port}", timeout=5).status_code == 200


def test_garbage_reply(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"SSH-2.0-OpenSSH_9.6\r\n"))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "protocol-error"


def test_oversized_headers(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    flood = b"HTTP/1.1 200 OK\r\n" + b"X-Flood: 1\r\n" * (MAX_HEADERS * 2) + b"\r\n"
    port = hosts.serve(replies(flood))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "protocol-error"


def test_close_without_a_byte(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b""))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "connection-error"


def test_reset_mid_headers(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    async def reset(reader, writer):  # type: ignore[no-untyped-def]
        from fetcher.loopback import read_request

        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Partial: ")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    port = hosts.serve(reset)
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None
    assert result.error.kind == "connection-error"


def test_interim_then_final(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK))
    assert fetch(f"127.0.0.1:{port}").status_code == 200


def test_http10_and_bare_lf(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.0 200 OK\nServer: old\n\nbody"))
    result = fetch(f"127.0.0.1:{port}")
    assert (result.http_version, result.status_code) == ("1.0", 200)
    assert result.headers == [("Server", "old")]


# --- more parity cases: every one asserts the same outcome on both backends ---------------------


def test_result_names_its_backend(hosts: LoopbackHosts, fetch: FetchOne, backend_name: str) -> None:
    port = hosts.serve(replies(OK))
    result = fetch(f"127.0.0.1:{port}")
    assert result.backend == backend_name
    assert result.timings["dns"] is not None  # both resolve through fetcher.resolve


def test_request_bytes_are_the_same(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    """Same request line and header lines, same order, same case: a server cannot tell."""
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    result = fetch(f"127.0.0.1:{port}/a?b=1", user_agent="probe/1", headers=(("X-Extra", "1"),))
    assert result.status_code == 200
    assert seen == [
        b"GET /a?b=1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"User-Agent: probe/1\r\nAccept: */*\r\nConnection: close\r\nX-Extra: 1\r\n\r\n"
    ]


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        pytest.param("OPTIONS", b"", id="options"),
        pytest.param("PROPFIND", b"", id="webdav"),
        pytest.param("X-CUSTOM.1", b"", id="any-token"),
        pytest.param("POST", b"Content-Length: 0\r\n", id="post-says-no-body"),
    ],
)
def test_any_method_token_is_sent_without_a_body(
    hosts: LoopbackHosts, fetch: FetchOne, method: str, extra: bytes
) -> None:
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    result = fetch(f"127.0.0.1:{port}/", method=method, user_agent="probe/1")
    assert result.status_code == 200 and result.method == method
    assert seen == [
        method.encode()
        + b" / HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"User-Agent: probe/1\r\nAccept: */*\r\nConnection: close\r\n"
        + extra
        + b"\r\n"
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            (("Host", "vhost.example"),),
            "Host: vhost.example\r\nUser-Agent: afetch/t\r\nAccept: */*\r\nConnection: close\r\n",
            id="host",
        ),
        pytest.param(
            (("X-Extra", "1"), ("host", "vhost.example:8080")),
            "host: vhost.example:8080\r\nUser-Agent: afetch/t\r\nAccept: */*\r\n"
            "Connection: close\r\nX-Extra: 1\r\n",
            id="host-lower-case-after-another",
        ),
        pytest.param(
            (("user-agent", "ua/2"), ("ACCEPT", "text/html"), ("connection", "keep-alive")),
            "Host: {authority}\r\nuser-agent: ua/2\r\nACCEPT: text/html\r\n"
            "connection: keep-alive\r\n",
            id="user-agent-accept-connection",
        ),
    ],
)
def test_a_header_given_replaces_ours(
    hosts: LoopbackHosts, fetch: FetchOne, given: tuple[tuple[str, str], ...], expected: str
) -> None:
    """-H NAME replaces afetch's header of that name, whatever the case, in its place: one Host
    line (first, as RFC 9110 7.2 asks), which is how a virtual host is checked. The same bytes
    on both backends."""
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    result = fetch(f"127.0.0.1:{port}/v", user_agent="afetch/t", headers=given)
    assert result.status_code == 200
    head = expected.format(authority=f"127.0.0.1:{port}")
    assert seen == [f"GET /v HTTP/1.1\r\n{head}\r\n".encode()]


def test_header_values_decoded_alike(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"X-Case: kept\r\n"
        b"X-Utf8: caf\xc3\xa9\r\n"
        b"X-Latin1: caf\xe9\r\n"
        b"X-Folded: one\r\n  two\r\n"
        b"x-case:   second  \r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    port = hosts.serve(replies(head))
    result = fetch(f"127.0.0.1:{port}")
    assert result.headers == [
        ("X-Case", "kept"),
        ("X-Utf8", "café"),
        ("X-Latin1", "café"),
        ("X-Folded", "one two"),
        ("x-case", "second"),
        ("Content-Length", "0"),
    ]
    assert result.headers_by_name()["x-case"] == ["kept", "second"]


def test_status_line_without_reason(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 204\r\n\r\n"))
    result = fetch(f"127.0.0.1:{port}")
    assert (result.status_code, result.reason, result.headers) == (204, "", [])


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="four-digit-status"),
        pytest.param(b"HTTP/2 200 OK\r\n\r\n", id="http2-status-line-on-http1"),
        pytest.param(b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", id="header-without-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", id="nul-in-value"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n", id="line"),
    ],
)
def test_malformed_heads(hosts: LoopbackHosts, fetch: FetchOne, reply: bytes) -> None:
    port = hosts.serve(replies(reply))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "protocol-error"


def test_closed_in_the_middle_of_the_head(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 200 OK\r\nX-Partial: "))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("protocol-error", "read")
    assert "middle of the header section" in result.error.message


def test_garbage_then_silence_fails_at_once(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    """An SSH server waits for our banner: the first bytes already say it is not HTTP."""

    async def ssh(reader, writer):  # type: ignore[no-untyped-def]
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    port = hosts.serve(ssh)
    started = time.monotonic()
    result = fetch(f"127.0.0.1:{port}", timeout=5)
    assert result.error is not None and result.error.kind == "protocol-error"
    assert "not an HTTP response" in result.error.message
    assert time.monotonic() - started < 2.5  # well before the 5 s deadline


def test_connect_timeout_covers_the_tls_handshake(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    """A port that accepts TCP but never speaks TLS: the connect timeout ends it, not the total."""
    port = hosts.serve(silent())
    started = time.monotonic()
    result = fetch(f"https://127.0.0.1:{port}/", connect_timeout=0.5, timeout=20)
    elapsed = time.monotonic() - started
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "tls")
    assert "within 0.5 s" in result.error.message
    assert 0.4 < elapsed < 5.0


def test_one_client_serves_many_targets(hosts: LoopbackHosts, backend_name: str) -> None:
    """More targets than connection slots: the pool sized from --concurrency never stalls."""
    port = hosts.serve(delayed(OK, 0.02))
    config = make_config(backend=backend_name, concurrency=3, timeout=10)

    results = collect([f"127.0.0.1:{port}/{i}" for i in range(30)], config)
    assert sorted(r.target.path for r in results if r.target) == sorted(f"/{i}" for i in range(30))
    assert all(r.status_code == 200 for r in results)


def test_too_many_interim_responses(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    """httpcore alone would skip any number of 1xx heads; the httpx backend holds the bytes to
    http1.MAX_INTERIM_RESPONSES as raw does (see _TracedStream)."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INTERIM_RESPONSES + 1)
    port = hosts.serve(replies(interim + OK))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "protocol-error"
    assert f"more than {MAX_INTERIM_RESPONSES} interim" in result.error.message


# --- where the backends genuinely differ: each case states both outcomes and why ----------------


def test_head_between_h11_and_our_limit(
    hosts: LoopbackHosts, fetch: FetchOne, backend_name: str
) -> None:
    """A 150 KiB header section. Ours allows 256 KiB (http1.MAX_HEAD_BYTES); httpcore caps h11
    at 100 KiB per head and offers no per-client setting, so httpx reports a protocol error."""
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(
        b"X-Big-%d: %s\r\n" % (i, b"a" * 3000) for i in range(50)
    )
    port = hosts.serve(replies(head + b"\r\n"))
    result = fetch(f"127.0.0.1:{port}")
    expected = {"raw": (200, None), "httpx": (None, "protocol-error")}
    assert (result.status_code, result.error and result.error.kind) == expected[backend_name]


def test_unsolicited_101(hosts: LoopbackHosts, fetch: FetchOne, backend_name: str) -> None:
    """101 Switching Protocols to a request that asked for no upgrade. Raw records the status
    line like any other; h11 refuses it as a protocol violation, and httpx with it."""
    port = hosts.serve(replies(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"))
    result = fetch(f"127.0.0.1:{port}")
    expected = {"raw": (101, None), "httpx": (None, "protocol-error")}
    assert (result.status_code, result.error and result.error.kind) == expected[backend_name]


def test_httpx_backend_keeps_no_cookies(hosts: LoopbackHosts) -> None:
    """A survey of a million hosts must not collect their Set-Cookie headers in memory."""
    port = hosts.serve(replies(OK))
    backend = HttpxBackend(make_config(backend="httpx"))

    async def go() -> ResponseHead:
        async with backend:
            return await backend.fetch(parse_target(f"127.0.0.1:{port}"), Trace())

    head = asyncio.run(go())
    assert [value for name, value in head.headers if name == "Set-Cookie"] == ["a=1", "b=2"]
    # No httpx.AsyncClient behind the backend: the only httpx object that collects cookies.
    held = vars(backend).values()
    assert not any(isinstance(value, (httpx.AsyncClient, httpx.Cookies)) for value in held)


def test_a_cafile_that_cannot_be_read_is_a_config_error(tmp_path: Any) -> None:
    """Library users get the CLI's check: a ConfigError naming the file, when the Config is
    built, before any backend or fetch."""
    from fetcher.config import ConfigError

    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=f"--cacert {missing}: No such file or directory"):
        make_config(cafile=str(missing))


# --- one-time set-up stays out of every phase's timing ------------------------------------------

SLOW_SETUP = 0.6  # seconds the set-up is made to take; the phases must stay far below it
FAST_PHASE_MS = 300  # a loopback phase takes about a millisecond; a 2x margin under SLOW_SETUP


def _slowly(make: Any) -> Any:
    """`make`, made to block its thread for SLOW_SETUP seconds first: a slow disk or a huge CA
    bundle, where the real one-time work takes 20 ms."""

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(SLOW_SETUP)
        return make(*args, **kwargs)

    return slow


def _phases_ms(result: Result) -> dict[str, float]:
    return {phase: ms for phase, ms in result.timings.items() if phase != "total"}


def test_loading_the_ca_store_is_in_no_phase(
    hosts: LoopbackHosts,
    backend_name: str,
    server_tls: ssl.SSLContext,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first https fetch waits for the CA store before its clock starts, and the loading
    holds up no other fetch: a plain http target in flight meanwhile keeps loopback timings."""
    from fetcher.backends import base, httpx_backend, raw

    for module in (raw, httpx_backend):
        monkeypatch.setattr(module, "make_ssl_context", _slowly(base.make_ssl_context))
    tls_port = hosts.serve(replies(OK), tls=server_tls)
    plain_port = hosts.serve(delayed(OK, 0.05))
    config = make_config(backend=backend_name, cafile=ca_file, concurrency=4)
    lines = [f"https://localhost:{tls_port}/", f"http://127.0.0.1:{plain_port}/"]

    results = collect(lines, config)
    assert [r.status_code for r in results] == [200, 200]
    for result in results:
        assert max(_phases_ms(result).values()) < FAST_PHASE_MS, result.timings
    https = next(r for r in results if r.target and r.target.scheme == "https")
    assert https.timings["total"] < FAST_PHASE_MS, https.timings


def test_the_ca_store_is_loaded_once_a_process(
    ca_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --workers worker builds a backend per chunk: each loaded the CA store again (about
    30 ms of CPU a chunk). A context is made once per process for the same arguments; a
    --cacert file that changed on disk is loaded again."""
    from fetcher.backends import base, raw

    alpn = ("http/1.1",)
    assert base.make_ssl_context(True, None, alpn) is base.make_ssl_context(True, None, alpn)
    assert base.make_ssl_context(True, None, alpn) is not base.make_ssl_context(False, None, alpn)
    assert base.make_ssl_context(True, None, alpn) is not base.make_ssl_context(
        True, None, ("http/1.1", "h2")
    )
    config = make_config(backend="raw")
    first, second = raw.RawBackend(config), raw.RawBackend(config)
    assert first._make_tls_context() is second._make_tls_context()

    pem = tmp_path / "ca.pem"
    pem.write_bytes(Path(ca_file).read_bytes())
    before = base.make_ssl_context(True, str(pem), alpn)
    assert base.make_ssl_context(True, str(pem), alpn) is before
    pem.write_bytes(pem.read_bytes() + b"\n")
    after = base.make_ssl_context(True, str(pem), alpn)
    assert after is not before and base.make_ssl_context(True, str(pem), alpn) is after
    # One kept for each (verify, file, ALPN): a file rewritten replaces its entry.
    assert sum(key[1] == str(pem) for key in base._CONTEXTS) == 1
    # What ssl reads from the environment, changed: loaded again.
    system = base.make_ssl_context(True, None, alpn)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    assert base.make_ssl_context(True, None, alpn) is not system


def test_an_http2_context_is_its_backends_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore sets the ALPN of an --http2 context on each connection: such a context is not
    shared with another backend, which may be on another thread (a Dask worker's)."""
    pytest.importorskip("h2", reason="afetch[http2] is not installed")
    from fetcher.backends import base, httpx_backend

    shared: list[object] = []

    def recording(*args: Any, **options: Any) -> ssl.SSLContext:
        shared.append(options.get("shared", True))
        return base.make_ssl_context(*args, **options)

    monkeypatch.setattr(httpx_backend, "make_ssl_context", recording)
    HttpxBackend(make_config(backend="httpx", http2=True))
    HttpxBackend(make_config(backend="httpx"))
    assert shared == [False, True]


def test_plain_http_never_loads_the_ca_store(
    hosts: LoopbackHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raw backend loads it for the first https target: a run of plain http targets must
    not pay its 20 ms, not even on a thread. (The httpx backend loads it when the first one in
    a process is built.)"""
    from fetcher.backends import raw

    loads: list[object] = []
    monkeypatch.setattr(raw, "make_ssl_context", lambda *args: loads.append(args))
    port = hosts.serve(replies(OK))
    results = collect([f"127.0.0.1:{port}"] * 3, make_config(backend="raw"))
    assert [result.status_code for result in results] == [200] * 3
    assert loads == []


def test_starting_the_resolver_is_in_no_phase(
    hosts: LoopbackHosts, backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing aiodns and opening the c-ares channel (about 20 ms) happen off the loop, and the
    first name lookup's clock starts after them: its dns time is the lookup's."""
    from fetcher import resolve

    monkeypatch.setattr(resolve, "_make_lookup", _slowly(resolve._make_lookup))
    port = hosts.serve(delayed(OK, 0.05))
    dns = hosts.serve_dns(LoopbackDNS({"named.test": ["127.0.0.1"]}))
    config = make_config(backend=backend_name, resolvers=(f"127.0.0.1:{dns}",), concurrency=4)
    lines = [f"http://named.test:{port}/", f"http://127.0.0.1:{port}/"]

    results = collect(lines, config)
    assert [r.status_code for r in results] == [200, 200]
    for result in results:
        assert max(_phases_ms(result).values()) < FAST_PHASE_MS, result.timings
        assert result.timings["total"] < FAST_PHASE_MS + 50, result.timings


def test_httpx_backend_sets_up_httpcore_before_the_first_fetch() -> None:
    """httpcore imports anyio's asyncio backend on its first request (about 25 ms, on the loop,
    while the other first fetches are in flight); entering the backend does it instead. A fresh
    interpreter, as a run is: this process has long imported it."""
    code = (
        "import asyncio, sys\n"
        "from fetcher.config import Config\n"
        "from fetcher.backends.httpx_backend import HttpxBackend\n"
        "async def go():\n"
        "    async with HttpxBackend(Config(backend='httpx')):\n"
        "        print('anyio._backends._asyncio' in sys.modules)\n"
        "asyncio.run(go())\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr


# --- --resolve HOST:PORT:ADDR -------------------------------------------------------------------


def test_a_pinned_name_connects_to_the_address_and_keeps_its_name(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext, ca_file: str
) -> None:
    """The name is nowhere in DNS: the pin alone makes it connect, and the certificate for
    other.example is checked against the name, not the address."""
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen), tls=wrong_name_tls)
    pins = (f"other.example:{port}:127.0.0.1",)
    result = fetch(f"https://other.example:{port}/", cafile=ca_file, pins=pins)
    assert result.status_code == 200, result.error
    assert result.host_ip == "127.0.0.1"
    assert f"\r\nHost: other.example:{port}\r\n" in seen[0].decode()
    # Another name pinned to the same server: its certificate does not name it.
    pins = ("else.example:*:127.0.0.1",)
    wrong = fetch(f"https://else.example:{port}/", cafile=ca_file, pins=pins)
    assert wrong.error is not None and wrong.error.kind == "tls-error", wrong.error


def test_a_pin_for_another_port_does_not_apply(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    from fetcher.loopback import LoopbackDNS

    dns = LoopbackDNS({})
    dns_port = hosts.serve_dns(dns)
    port = hosts.serve(replies(OK))
    other = port + 1 if port < 65535 else 1
    pins = (f"pinned.example:{other}:127.0.0.1",)
    result = fetch(
        f"pinned.example:{port}", pins=pins, resolvers=(f"127.0.0.1:{dns_port}",), timeout=5
    )
    assert result.error is not None and result.error.kind == "dns-error", result.error
    assert fetch(f"PINNED.example:{port}", pins=("pinned.example:*:127.0.0.1",)).status_code == 200
