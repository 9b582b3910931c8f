"""The httpx backend's exception mapping, case by case: each httpx exception must become the kind
and phase the raw backend gives the same failure, and nothing may escape as a traceback.

respx (side_effect=) raises each exception class from the transport. It re-raises with its own
__cause__, though, so the cases decided by the OSError under an httpx exception (DNS, refused,
TLS, reset) use a failing network backend under httpcore instead: httpcore and httpx then build
the very chain they build in production (httpx.ConnectError <- httpcore.ConnectError <- OSError).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any

import httpcore
import httpx
import pytest
import respx
from conftest import make_config
from respx.mocks import HTTPCoreMocker

from fetcher.backends.httpx_backend import HttpxBackend, Probe, map_httpx_error
from fetcher.config import Timeouts
from fetcher.errors import FetchError
from fetcher.models import Trace
from fetcher.targets import parse_target

URL = "http://mapped.test:8080/"

# respx patches httpcore's pool and connection classes; the backend drives its own one-shot
# connections through that same interface, so they are added as a target (respx's documented
# way to mock a custom transport).
HTTPCoreMocker.add_targets("fetcher.backends.httpx_backend._OneShotConnections")


def fetch_raising(effect: BaseException) -> FetchError:
    """Run one fetch on the httpx backend while respx makes the transport raise `effect`."""
    backend = HttpxBackend(make_config(backend="httpx", timeout=7, connect_timeout=3))

    async def run() -> None:
        async with backend:
            with respx.mock(assert_all_called=True) as mock:
                mock.get(URL).mock(side_effect=effect)
                await backend.fetch(parse_target(URL), Trace())

    with pytest.raises(FetchError) as info:
        asyncio.run(run())
    return info.value


CASES = [
    # --- connect (the cause chains are in test_os_error_under_httpx_decides below) -----------
    pytest.param(httpx.ConnectError("x"), ("connection-error", "connect"), id="ConnectError"),
    # --- timeouts, by phase -------------------------------------------------------------------
    pytest.param(httpx.ConnectTimeout("x"), ("timeout", "connect"), id="ConnectTimeout"),
    pytest.param(httpx.ReadTimeout("x"), ("timeout", "read"), id="ReadTimeout"),
    pytest.param(httpx.WriteTimeout("x"), ("timeout", "write"), id="WriteTimeout"),
    pytest.param(httpx.PoolTimeout("x"), ("timeout", "connect"), id="PoolTimeout"),
    pytest.param(httpx.TimeoutException("x"), ("timeout", "connect"), id="TimeoutException"),
    # --- reading and writing ------------------------------------------------------------------
    pytest.param(httpx.ReadError(""), ("connection-error", "read"), id="ReadError"),
    pytest.param(httpx.WriteError("x"), ("connection-error", "write"), id="WriteError"),
    pytest.param(httpx.CloseError("x"), ("connection-error", "read"), id="CloseError"),
    pytest.param(httpx.NetworkError("x"), ("connection-error", "read"), id="NetworkError"),
    # --- protocol -----------------------------------------------------------------------------
    pytest.param(
        httpx.RemoteProtocolError("illegal status line"),
        ("protocol-error", "read"),
        id="RemoteProtocolError",
    ),
    pytest.param(
        httpx.LocalProtocolError("illegal header"), ("protocol-error", "write"), id="LocalProtocol"
    ),
    pytest.param(httpx.ProtocolError("x"), ("protocol-error", "read"), id="ProtocolError"),
    pytest.param(httpx.DecodingError("x"), ("protocol-error", "read"), id="DecodingError"),
    # --- the rest -----------------------------------------------------------------------------
    pytest.param(httpx.ProxyError("x"), ("connection-error", "connect"), id="ProxyError"),
    pytest.param(httpx.UnsupportedProtocol("x"), ("invalid-input", None), id="UnsupportedProtocol"),
    pytest.param(httpx.InvalidURL("x"), ("invalid-input", None), id="InvalidURL"),
    pytest.param(
        httpx.TooManyRedirects("x"), ("too-many-redirects", "redirect"), id="TooManyRedirects"
    ),
    pytest.param(httpx.TransportError("x"), ("connection-error", "connect"), id="TransportError"),
    pytest.param(httpx.RequestError("x"), ("connection-error", "connect"), id="RequestError"),
    pytest.param(httpx.HTTPError("x"), ("protocol-error", "connect"), id="HTTPError"),
    pytest.param(httpx.StreamError("x"), ("protocol-error", "connect"), id="StreamError"),
    pytest.param(httpx.StreamClosed(), ("protocol-error", "connect"), id="StreamClosed"),
    pytest.param(httpx.CookieConflict("x"), ("protocol-error", "connect"), id="CookieConflict"),
    # --- not httpx's, but never a traceback either --------------------------------------------
    pytest.param(
        ConnectionResetError(errno.ECONNRESET, "reset"),
        ("connection-error", "connect"),
        id="bare-OSError",
    ),
]


@pytest.mark.parametrize(("effect", "expected"), CASES)
def test_each_httpx_exception_maps_to_our_kind(
    effect: BaseException, expected: tuple[str, str | None]
) -> None:
    error = fetch_raising(effect)
    assert (error.kind, error.phase) == expected
    assert error.message


def test_every_exception_httpx_exports_is_covered() -> None:
    """A new exception class in a future httpx fails this test until CASES names it."""
    exported = {
        name
        for name in httpx.__all__
        if isinstance(getattr(httpx, name), type) and issubclass(getattr(httpx, name), Exception)
    }
    covered = {type(param.values[0]).__name__ for param in CASES}
    # Never raised by a client that does not call raise_for_status() or read bodies, and
    # covered by their base classes above (HTTPError, StreamError -> StreamClosed).
    unreachable = {"HTTPStatusError", "RequestNotRead", "ResponseNotRead", "StreamConsumed"}
    assert exported - covered == unreachable


def test_timeout_messages_name_the_configured_seconds() -> None:
    assert fetch_raising(httpx.ConnectTimeout("x")).message == "connect not done within 3 s"
    assert fetch_raising(httpx.ReadTimeout("x")).message == "no response headers within 7 s"


class FailingNetwork(httpcore.AsyncNetworkBackend):
    """Raises `exc` (an httpcore exception, caused by an OSError as anyio's would be) at `step`:
    connect, tls, write or read."""

    def __init__(self, step: str, exc: Exception) -> None:
        self.step, self.exc = step, exc

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        if self.step == "connect":
            raise self.exc
        return FailingStream(self.step, self.exc)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError


class FailingStream(httpcore.AsyncNetworkStream):
    def __init__(self, step: str, exc: Exception) -> None:
        self.step, self.exc = step, exc

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        if self.step == "tls":
            raise self.exc
        return self

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.step == "write":
            raise self.exc

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.step == "read":
            raise self.exc
        return b""

    async def aclose(self) -> None:
        pass


def from_os_error(exc_type: type[Exception], cause: BaseException) -> Exception:
    """exc_type raised from `cause` while handling it, as httpcore's map_exceptions does (the
    connection pool re-raises `from None`, so only __context__ survives, as in production)."""
    try:
        try:
            raise cause
        except BaseException as handled:
            raise exc_type(str(cause)) from handled
    except exc_type as exc:
        return exc


REFUSED = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
ALL_FAILED = "All connection attempts failed"  # anyio wraps the real OSError in this one


def anyio_connect_failure(*causes: OSError) -> Exception:
    """httpcore.ConnectError <- OSError(ALL_FAILED) <- the OSError (or a group of them)."""
    cause = causes[0] if len(causes) == 1 else ExceptionGroup("attempts failed", list(causes))
    return from_os_error(httpcore.ConnectError, from_os_error(OSError, cause))


@pytest.mark.parametrize(
    ("url", "step", "exc", "expected"),
    [
        pytest.param(
            "http://127.0.0.1:9/",
            "connect",
            anyio_connect_failure(REFUSED),
            ("connection-refused", "connect"),
            id="refused",
        ),
        pytest.param(
            "http://127.0.0.1:9/",
            "connect",
            anyio_connect_failure(REFUSED, REFUSED),
            ("connection-refused", "connect"),
            id="refused-on-every-address",
        ),
        pytest.param(
            "http://127.0.0.1:9/",
            "connect",
            anyio_connect_failure(OSError(errno.EHOSTUNREACH, "No route to host")),
            ("connection-error", "connect"),
            id="unreachable",
        ),
        pytest.param(
            "http://127.0.0.1:9/",
            "connect",
            anyio_connect_failure(OSError(errno.EMFILE, "Too many open files")),
            ("local-error", "connect"),
            id="out-of-file-descriptors",
        ),
        pytest.param(
            "http://127.0.0.1:9/",
            "connect",
            anyio_connect_failure(socket.gaierror(socket.EAI_NONAME, "Name not known")),
            ("dns-error", "dns"),
            id="gaierror",
        ),
        pytest.param(
            "https://127.0.0.1:9/",
            "tls",
            from_os_error(httpcore.ConnectError, ssl.SSLCertVerificationError(1, "bad cert")),
            ("tls-error", "tls"),
            id="certificate",
        ),
        pytest.param(
            "https://127.0.0.1:9/",
            "tls",
            from_os_error(httpcore.ConnectError, ssl.SSLError(1, "WRONG_VERSION_NUMBER")),
            ("tls-error", "tls"),
            id="tls-handshake",
        ),
        pytest.param(
            "https://127.0.0.1:9/",
            "tls",
            httpcore.ConnectError(""),  # anyio.EndOfStream: closed during the handshake
            ("connection-error", "tls"),
            id="closed-during-handshake",
        ),
        pytest.param(
            "https://127.0.0.1:9/",
            "tls",
            httpcore.ConnectTimeout(""),
            ("timeout", "tls"),
            id="handshake-timeout",
        ),
        pytest.param(
            "http://127.0.0.1:9/",
            "read",
            from_os_error(httpcore.ReadError, ConnectionResetError(errno.ECONNRESET, "reset")),
            ("connection-error", "read"),
            id="reset-while-reading",
        ),
        pytest.param(
            "https://127.0.0.1:9/",
            "read",
            from_os_error(httpcore.ReadError, ssl.SSLError(1, "DECRYPTION_FAILED")),
            ("tls-error", "tls"),
            id="tls-error-while-reading",
        ),
        pytest.param(
            "http://127.0.0.1:9/",
            "read",
            httpcore.ReadTimeout(""),
            ("timeout", "read"),
            id="read-timeout",
        ),
    ],
)
def test_os_error_under_httpx_decides(
    url: str, step: str, exc: Exception, expected: tuple[str, str]
) -> None:
    backend = HttpxBackend(make_config(backend="httpx"), network=FailingNetwork(step, exc))
    trace = Trace()

    async def run() -> None:
        async with backend:
            await backend.fetch(parse_target(url), trace)

    with pytest.raises(FetchError) as info:
        asyncio.run(run())
    assert (info.value.kind, info.value.phase) == expected
    assert trace.host_ip == "127.0.0.1"


# What only the probe knows (the phase reached, bytes received, EOF): map_httpx_error directly.
TIMEOUTS = Timeouts(total=10, connect=2)


def probe(phase: str, received: int = 0, closed: bool = False) -> Probe:
    trace = Trace()
    trace.phase = phase
    return Probe(trace, received=received, closed=closed)


@pytest.mark.parametrize(
    ("exc", "state", "expected"),
    [
        pytest.param(
            httpx.ConnectTimeout("x"), probe("tls"), ("timeout", "tls"), id="handshake-timeout"
        ),
        pytest.param(
            httpx.ConnectError("x"), probe("tls"), ("connection-error", "tls"), id="closed-in-tls"
        ),
        pytest.param(
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            probe("read", received=0, closed=True),
            ("connection-error", "read"),
            id="closed-before-a-byte",
        ),
        pytest.param(
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            probe("read", received=30, closed=True),
            ("protocol-error", "read"),
            id="closed-mid-head",
        ),
    ],
)
def test_probe_state_decides(exc: Exception, state: Probe, expected: tuple[str, str]) -> None:
    error = map_httpx_error(exc, state, TIMEOUTS)
    assert (error.kind, error.phase) == expected


def test_closed_before_a_byte_says_so_as_raw_does() -> None:
    error = map_httpx_error(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        probe("read", closed=True),
        TIMEOUTS,
    )
    assert error.message == "connection closed without a response"
