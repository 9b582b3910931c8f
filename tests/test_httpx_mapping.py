"""The httpx backend's error mapping, case by case: each httpcore exception must become the kind
and phase the raw backend gives the same failure, an OSError must become afetch's error where it
happens (no foreign exception in between), and nothing may escape as a traceback.

respx (side_effect=) raises each httpcore exception from the backend's HTTP/1.1 connections,
registered with respx the documented way for a custom transport (HTTPCoreMocker.add_targets).
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from typing import Any

import httpcore
import httpx
import pytest
import respx
from conftest import FetchOne, make_config
from respx.mocks import HTTPCoreMocker

from fetcher.backends.httpx_backend import (
    HTTPCORE_ERRORS,
    HttpxBackend,
    Probe,
    TracedStream,
    WriteFailed,
    map_httpcore_error,
    response_head,
)
from fetcher.errors import ConnectError, FetchError, ProtocolError, TLSError
from fetcher.http1 import MAX_HEADERS, MAX_LINE_BYTES, ResponseHead
from fetcher.loopback import LoopbackHosts, replies, response
from fetcher.models import Trace
from fetcher.targets import parse_target

URL = "http://mapped.test:8080/"
OK = response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1")])

HTTPCoreMocker.add_targets("fetcher.backends.httpx_backend.OneShotConnections")


def fetch_mocked(**route: Any) -> ResponseHead:
    """One fetch on the httpx backend while respx answers (or fails) for the connection."""
    backend = HttpxBackend(make_config(backend="httpx", timeout=7, connect_timeout=3))

    async def run() -> ResponseHead:
        async with backend:
            with respx.mock(assert_all_called=True) as mock:
                mock.get(URL).mock(**route)
                return await backend.fetch(parse_target(URL), Trace())

    return asyncio.run(run())


def fetch_raising(effect: BaseException) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_mocked(side_effect=effect)
    return info.value


def test_respx_answers_for_the_backend() -> None:
    head = fetch_mocked(
        return_value=httpx.Response(
            301, headers=[("Location", "mailto:x@y"), ("X-A", "1"), ("X-A", "2")]
        )
    )
    assert (head.status_code, head.http_version) == (301, "1.1")
    # A Location httpx could not build a redirect request from is just a header here.
    assert head.headers == [("Location", "mailto:x@y"), ("X-A", "1"), ("X-A", "2")]


CASES = [
    pytest.param(httpcore.ConnectTimeout("x"), ("timeout", "connect"), id="ConnectTimeout"),
    pytest.param(httpcore.ReadTimeout("x"), ("timeout", "read"), id="ReadTimeout"),
    pytest.param(httpcore.WriteTimeout("x"), ("timeout", "write"), id="WriteTimeout"),
    pytest.param(httpcore.PoolTimeout("x"), ("timeout", "connect"), id="PoolTimeout"),
    pytest.param(httpcore.TimeoutException("x"), ("timeout", "read"), id="TimeoutException"),
    pytest.param(httpcore.ConnectError("x"), ("connection-error", "connect"), id="ConnectError"),
    pytest.param(httpcore.ReadError(""), ("connection-error", "read"), id="ReadError"),
    pytest.param(httpcore.WriteError("x"), ("connection-error", "write"), id="WriteError"),
    pytest.param(httpcore.NetworkError("x"), ("connection-error", "read"), id="NetworkError"),
    pytest.param(httpcore.ProxyError("x"), ("connection-error", "connect"), id="ProxyError"),
    pytest.param(
        httpcore.RemoteProtocolError("illegal status line"),
        ("protocol-error", "read"),
        id="RemoteProtocolError",
    ),
    pytest.param(
        httpcore.LocalProtocolError("illegal header"), ("protocol-error", "write"), id="Local"
    ),
    pytest.param(httpcore.ProtocolError("x"), ("protocol-error", "read"), id="ProtocolError"),
    pytest.param(httpcore.UnsupportedProtocol("x"), ("invalid-input", None), id="Unsupported"),
    pytest.param(httpx.InvalidURL("x"), ("invalid-input", None), id="InvalidURL"),
    pytest.param(
        WriteFailed(ConnectError("connection reset by peer", "write")),
        ("connection-error", "write"),
        id="WriteFailed",
    ),
]


@pytest.mark.parametrize(("effect", "expected"), CASES)
def test_each_httpcore_exception_maps_to_our_kind(
    effect: BaseException, expected: tuple[str, str | None]
) -> None:
    error = fetch_raising(effect)
    assert (error.kind, error.phase) == expected
    assert error.message
    assert error.__cause__ is effect  # mapped once, raise X from exc


def test_every_exception_httpcore_exports_is_covered() -> None:
    """A new exception class in a future httpcore fails this test until the table names it."""
    exported = {
        getattr(httpcore, name)
        for name in httpcore.__all__
        if isinstance(getattr(httpcore, name), type)
        and issubclass(getattr(httpcore, name), Exception)
    }
    # The pool retries it itself, and a one-shot request always has a NEW connection: escaping
    # would be a bug, which the engine reports as an internal error, never a server's fault.
    unmapped = {httpcore.ConnectionNotAvailable}
    assert exported - {row[0] for row in HTTPCORE_ERRORS} == unmapped
    assert {type(param.values[0]) for param in CASES} >= exported - unmapped
    assert map_httpcore_error(httpcore.ConnectionNotAvailable(), {}) is None


def test_an_exception_the_table_does_not_know_passes_through() -> None:
    """Not blamed on the server: the engine records it as an internal error (test_engine)."""
    with pytest.raises(httpcore.ConnectionNotAvailable):
        fetch_mocked(side_effect=httpcore.ConnectionNotAvailable())


def test_timeout_messages_name_the_configured_seconds() -> None:
    assert fetch_raising(httpcore.ConnectTimeout("x")).message == "connect not done within 3 s"
    assert fetch_raising(httpcore.ReadTimeout("x")).message == "no response headers within 7 s"
    assert map_httpcore_error(httpcore.ReadTimeout("x"), {}) is not None


# --- an OSError becomes afetch's error where it happens -----------------------------------------


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        pytest.param(
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            ("connection-refused", "connect"),
            id="refused",
        ),
        pytest.param(
            OSError(errno.EHOSTUNREACH, "No route to host"),
            ("connection-error", "connect"),
            id="unreachable",
        ),
        pytest.param(
            OSError(errno.EMFILE, "Too many open files"),
            ("local-error", "connect"),
            id="out-of-file-descriptors",
        ),
    ],
)
def test_connect_os_error_is_mapped_where_it_happens(
    monkeypatch: pytest.MonkeyPatch, cause: OSError, expected: tuple[str, str]
) -> None:
    async def failing_open_connection(*args: Any, **kwargs: Any) -> Any:
        raise cause

    monkeypatch.setattr(asyncio, "open_connection", failing_open_connection)
    backend = HttpxBackend(make_config(backend="httpx"))
    trace = Trace()

    async def run() -> None:
        async with backend:
            await backend.fetch(parse_target("http://127.0.0.1:9/"), trace)

    with pytest.raises(FetchError) as info:
        asyncio.run(run())
    assert (info.value.kind, info.value.phase) == expected
    assert info.value.__cause__ is cause  # no httpcore or httpx exception in between
    assert trace.host_ip == "127.0.0.1"


def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_connects(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(60)

    monkeypatch.setattr(asyncio, "open_connection", never_connects)
    backend = HttpxBackend(make_config(backend="httpx", connect_timeout=0.2))

    async def run() -> None:
        async with backend:
            await backend.fetch(parse_target("http://127.0.0.1:9/"), Trace())

    with pytest.raises(FetchError) as info:
        asyncio.run(run())
    assert (info.value.kind, info.value.phase) == ("timeout", "connect")
    assert info.value.message == "connect not done within 0.2 s"


class FakeWriter:
    """The asyncio.StreamWriter surface TracedStream uses; drain() raises `error` if given."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error = error
        self.written = b""
        self.transport = self  # abort() is all TracedStream asks of the transport
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return f"writer {name}"


class FailingReader(asyncio.StreamReader):
    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    async def read(self, n: int = -1) -> bytes:
        raise self.error


def stream_over(reader: asyncio.StreamReader, writer: FakeWriter) -> TracedStream:
    return TracedStream(reader, writer, Probe(Trace()), None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        pytest.param(
            ConnectionResetError(errno.ECONNRESET, "reset"),
            (ConnectError, "connection-error", "read"),
            id="reset-while-reading",
        ),
        pytest.param(
            ssl.SSLError(1, "DECRYPTION_FAILED"),
            (TLSError, "tls-error", "tls"),
            id="tls-error-while-reading",
        ),
    ],
)
def test_read_os_error_is_mapped_where_it_happens(
    cause: OSError, expected: tuple[type[FetchError], str, str]
) -> None:
    async def run() -> None:
        await stream_over(FailingReader(cause), FakeWriter()).read(100)

    with pytest.raises(expected[0]) as info:
        asyncio.run(run())
    assert (info.value.kind, info.value.phase) == expected[1:]
    assert info.value.__cause__ is cause


def test_a_failed_write_still_reads_the_early_answer() -> None:
    """WriteFailed is httpcore's WriteError, so httpcore's HTTP/1.1 connection reads on after it
    and a server that answered before closing is still heard, as on raw."""

    async def run() -> httpcore.Response:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
        writer = FakeWriter(BrokenPipeError(errno.EPIPE, "Broken pipe"))
        origin = httpcore.Origin(b"http", b"127.0.0.1", 80)
        connection = httpcore.AsyncHTTP11Connection(origin, stream_over(reader, writer))
        request = httpcore.Request("GET", "http://127.0.0.1/", headers=[("Host", "127.0.0.1")])
        return await connection.handle_async_request(request)

    assert asyncio.run(run()).status == 413


def test_a_failed_write_without_an_answer_is_reported_as_on_raw() -> None:
    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_eof()
        stream = stream_over(reader, FakeWriter(BrokenPipeError(errno.EPIPE, "Broken pipe")))
        with pytest.raises(WriteFailed) as info:
            await stream.write(b"GET / HTTP/1.1\r\n\r\n")
        assert (info.value.error.kind, info.value.error.phase) == ("connection-error", "write")
        with pytest.raises(ConnectError, match="closed without a response"):
            await stream.read(100)

    asyncio.run(run())


def test_closed_during_the_handshake(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"", wait_for_request=False))
    result = fetch(f"https://127.0.0.1:{port}/", verify=False)
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("connection-error", "tls")


# --- the transport is a plain httpx transport ---------------------------------------------------


def test_transport_works_under_async_with_httpx_async_client(hosts: LoopbackHosts) -> None:
    """httpx.AsyncClient enters and leaves its transport: the old private pool could not."""
    port = hosts.serve(replies(OK))
    backend = HttpxBackend(make_config(backend="httpx"))

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=backend.transport) as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as answer:
                return answer

    answer = asyncio.run(run())
    assert (answer.status_code, answer.http_version) == (200, "HTTP/1.1")
    assert answer.headers["content-type"] == "text/plain"


def test_stream_answers_httpcore_s_extra_info_keys() -> None:
    async def run() -> dict[str, Any]:
        reader = asyncio.StreamReader()
        reader.feed_eof()
        stream = stream_over(reader, FakeWriter())
        keys = ["ssl_object", "client_addr", "server_addr", "socket", "is_readable", "other"]
        return {key: stream.get_extra_info(key) for key in keys}

    assert asyncio.run(run()) == {
        "ssl_object": "writer ssl_object",
        "client_addr": "writer sockname",
        "server_addr": "writer peername",
        "socket": "writer socket",
        "is_readable": True,  # at EOF: an idle connection the server has closed
        "other": None,
    }


def test_transport_reads_bodies_for_a_client(hosts: LoopbackHosts) -> None:
    port = hosts.serve(replies(OK))
    backend = HttpxBackend(make_config(backend="httpx"))

    async def run() -> str:
        async with httpx.AsyncClient(transport=backend.transport) as client:
            return (await client.get(f"http://127.0.0.1:{port}/")).text

    assert asyncio.run(run()) == "hello\n"


def test_transport_refuses_other_schemes() -> None:
    backend = HttpxBackend(make_config(backend="httpx"))

    async def run() -> None:
        await backend.transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))

    with pytest.raises(FetchError) as info:
        asyncio.run(run())
    assert info.value.kind == "invalid-input"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param([("X-N", "1")] * (MAX_HEADERS + 1), "more than 256 header fields", id="count"),
        pytest.param([("X-Long", "a" * MAX_LINE_BYTES)], "header line longer than", id="line"),
    ],
)
def test_http2_heads_are_held_to_the_http1_limits(
    headers: list[tuple[str, str]], message: str
) -> None:
    """HTTP/1 heads meet the HeadParser in the stream; HTTP/2 ones these checks."""
    with pytest.raises(ProtocolError, match=message):
        response_head(httpx.Response(200, headers=headers), Trace())
