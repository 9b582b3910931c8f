"""The httpx backend: one httpx.AsyncClient per run, with httpx's errors mapped onto ours.

httpx (with httpcore and h11, or h2 with --http2) does the HTTP; afetch adds what a header
survey needs and httpx does not give on its own:

- a network backend under httpcore (`_TracedNetwork`) that resolves names with the same cached
  resolver as the raw backend, connects to the addresses in order, and reports every step to the
  fetch's Trace: phase, peer address, dns/connect/tls/ttfb timings, bytes received. It also makes
  the connect timeout cover TCP *and* TLS together, as on raw (httpcore gives each its own);
- the same stream holds HTTP/1 bytes up to the final head to the limits of http1.py (the raw
  backend's HeadParser), so a hostile server gets the same verdict on both backends;
- the request is streamed and closed once the head is in: bodies are never downloaded;
- `map_httpx_error`, the one place httpx/httpcore exceptions become FetchErrors.

The engine still owns the total deadline: httpx's timeouts apply per read, so a server dripping
a byte a second would defeat them alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any, Protocol

import anyio
import httpcore
import httpx

from ..config import Config, Request, Timeouts
from ..errors import (
    ConnectError,
    FetchError,
    FetchTimeout,
    InvalidInput,
    ProtocolError,
    TooManyRedirects,
    map_os_error,
)
from ..http1 import MAX_HEADERS, MAX_LINE_BYTES, HeadParser, ResponseHead, decode_field
from ..models import Trace
from ..resolve import Resolver, ip_literal
from ..targets import Target
from .base import Backend, make_ssl_context

# Same grace as the raw backend: once the head is in hand, a slow goodbye must not cost it.
CLOSE_GRACE = 1.0
# Request headers HTTP/2 forbids (RFC 9113 section 8.2.2); h2 refuses to send them, so with
# --http2 they are left out (our own "Connection: close" among them).
H2_FORBIDDEN_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


@dataclass(slots=True)
class Probe:
    """What the network layer learns during one fetch, beyond the Trace itself: enough to tell
    the failures h11 reports alike ("server disconnected") apart the way the raw backend does."""

    trace: Trace
    received: int = 0  # bytes read from the server
    closed: bool = False  # the server closed the connection (a read returned EOF)
    sent: float | None = None  # when the last write finished, for ttfb
    response: httpx.Response | None = None  # set as soon as httpx has the response head


# The probe of the fetch running in the current task. httpcore opens the connection and does
# all its I/O in the task that sent the request, so the network backend finds it here.
_PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("afetch_probe", default=None)


class HttpxBackend(Backend):
    """httpx.AsyncClient behind the Backend interface: same records, same error kinds as raw."""

    name = "httpx"

    def __init__(self, config: Config, network: httpcore.AsyncNetworkBackend | None = None) -> None:
        """`network` replaces httpcore's anyio backend under the tracing layer (for tests)."""
        super().__init__(config)
        request = config.request
        self._headers = request_headers(request)
        timeouts = config.timeouts
        # connect: TCP + TLS (see _TracedNetwork). read/write/pool: backstops only; the engine's
        # wait_for ends the fetch at `total` whatever these do.
        self._timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.total, write=timeouts.total, pool=timeouts.total
        ).as_dict()
        ssl_context = make_ssl_context(request.verify, request.cafile)
        self._resolver = Resolver(config.resolvers)
        traced = _TracedNetwork(self._resolver, network or AsyncioNetwork())
        pool: _Requests
        if request.http2:
            # HTTP/2 multiplexes requests to one origin over one connection: that needs a pool.
            pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                # The engine never has more than `concurrency` fetches in flight.
                max_connections=config.limits.concurrency,
                # Every target is a new host as a rule; an idle connection is only a held fd.
                max_keepalive_connections=0,
                http1=True,
                http2=True,
                network_backend=traced,
            )
        else:
            pool = _OneShotConnections(ssl_context, traced)
        self._client = httpx.AsyncClient(
            transport=_Transport(pool, ssl_context),
            follow_redirects=False,  # a redirect is a result to report, not to follow
            # No proxies or certificate bundles from the environment: the same sockets, the
            # same trust store and the same result as the raw backend on the same machine.
            trust_env=False,
            cookies=_NoCookies(),
            event_hooks={"response": [_keep_response]},
        )

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        probe = Probe(trace)
        # Until the network backend starts resolving, the request waits for a pool slot.
        trace.phase = "connect"
        token = _PROBE.set(probe)
        try:
            with map_httpx_exceptions(probe, self.config.timeouts):
                # Built directly (not client.build_request) so exactly our headers are sent, in
                # the raw backend's order: Host, User-Agent, Accept, Connection, then -H ones.
                request = httpx.Request(
                    self.config.request.method,
                    target.url,
                    headers=self._headers,
                    extensions={"timeout": self._timeout},
                )
                try:
                    response = await self._client.send(request, stream=True)
                except (httpx.InvalidURL, httpx.RemoteProtocolError):
                    # httpx builds the next request for any 3xx with a Location, even when not
                    # following, and fails on one it cannot parse (mailto:, a bad URL; "Invalid
                    # URL in location header" is a RemoteProtocolError). The head itself
                    # arrived: report it, as the raw backend does.
                    if probe.response is None:
                        raise
                    response = probe.response
                try:
                    return response_head(response, trace)
                finally:
                    await _close(response)
        finally:
            _PROBE.reset(token)

    async def __aenter__(self) -> HttpxBackend:
        # httpcore's first request imports anyio's asyncio backend (its locks need one): about
        # 25 ms on the loop, which every fetch then in flight counted in its timings. Done
        # here, before any fetch, instead: a run pays it once either way.
        anyio.Lock()
        return self

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        finally:
            await self._resolver.aclose()


class _NoCookies(CookieJar):
    """A cookie jar that takes nothing: a survey of a million hosts must not collect their
    cookies in memory, nor parse them (httpx hands every response to the jar; the stdlib's
    parse, even one its policy then rejects, was about 4% of this backend's time)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


async def _keep_response(response: httpx.Response) -> None:
    """httpx event hook: remember the response head for the fetch it belongs to."""
    _probe().response = response


def request_headers(request: Request) -> list[tuple[str, str]]:
    """The raw backend's headers; with --http2 minus those HTTP/2 forbids."""
    headers = request.header_lines()
    if request.http2:
        headers = [(n, v) for n, v in headers if n.lower() not in H2_FORBIDDEN_HEADERS]
    return headers


def response_head(response: httpx.Response, trace: Trace) -> ResponseHead:
    """The Result fields from an httpx response, decoded exactly as the raw backend does."""
    raw = response.headers.raw  # as received: names in their case, duplicates in order
    # HTTP/1 heads have passed the HeadParser guard already; HTTP/2 ones (hpack bounds the whole
    # list to 64 KiB) are held to the same field count and line length here.
    if len(raw) > MAX_HEADERS:
        raise ProtocolError(f"more than {MAX_HEADERS} header fields", "read")
    headers = []
    for name, value in raw:
        if len(name) + len(value) + 2 > MAX_LINE_BYTES:
            raise ProtocolError(f"header line longer than {MAX_LINE_BYTES} bytes", "read")
        headers.append((decode_field(name), decode_field(value)))
    if trace.host_ip is None:  # a reused HTTP/2 connection: this fetch did not connect
        stream = response.extensions.get("network_stream")
        address = stream.get_extra_info("server_addr") if stream is not None else None
        if address:
            trace.host_ip = str(address[0])
    return ResponseHead(
        http_version=response.http_version.removeprefix("HTTP/"),  # "1.0", "1.1", "2"
        status_code=response.status_code,
        reason=decode_field(response.extensions.get("reason_phrase", b"")),
        headers=headers,
    )


async def _close(response: httpx.Response) -> None:
    """Close the response (and with it the connection) without reading the body."""
    with suppress(httpx.HTTPError, OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_GRACE):
            await response.aclose()


# --- errors -----------------------------------------------------------------------------------


@contextmanager
def map_httpx_exceptions(probe: Probe, timeouts: Timeouts) -> Iterator[None]:
    """Re-raise httpx/httpcore exceptions from the block as FetchErrors (see map_httpx_error)."""
    try:
        yield
    except FetchError:
        raise
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict) as exc:
        raise map_httpx_error(exc, probe, timeouts) from exc
    except OSError as exc:  # not expected past httpx, but never a traceback if it happens
        raise map_os_error(exc, probe.trace.phase) from exc


def map_httpx_error(exc: Exception, probe: Probe, timeouts: Timeouts) -> FetchError:
    """The FetchError for an exception raised by httpx, most specific class first.

    ConnectTimeout                 timeout            connect or tls (the phase it was in)
    ReadTimeout / WriteTimeout     timeout            read / write
    PoolTimeout                    timeout            connect (no free connection)
    ConnectError/ReadError/...     by the OSError that caused it, as on raw: dns-error,
                                   connection-refused, tls-error or connection-error
    RemoteProtocolError            protocol-error     read; connection-error if the server
                                                      closed before sending a single byte
    LocalProtocolError             protocol-error     write
    other ProtocolError/Decoding   protocol-error     read
    ProxyError                     connection-error   connect
    UnsupportedProtocol/InvalidURL invalid-input
    TooManyRedirects               too-many-redirects redirect
    any other RequestError         connection-error   the phase it was in
    anything else                  protocol-error     (a misuse of httpx: a bug of ours)
    """
    message = _describe(exc)
    phase = probe.trace.phase
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, httpx.ConnectTimeout):
            phase = "tls" if phase == "tls" else "connect"
            return FetchTimeout(f"{phase} not done within {timeouts.connect:g} s", phase)
        if isinstance(exc, httpx.ReadTimeout):
            return FetchTimeout(f"no response headers within {timeouts.total:g} s", "read")
        if isinstance(exc, httpx.WriteTimeout):
            return FetchTimeout(f"write not done within {timeouts.total:g} s", "write")
        if isinstance(exc, httpx.PoolTimeout):
            return FetchTimeout(f"no free connection within {timeouts.total:g} s", "connect")
        return FetchTimeout(f"{phase} not done in time", phase)
    if isinstance(exc, httpx.TooManyRedirects):
        return TooManyRedirects(message, "redirect")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return InvalidInput(message)
    if isinstance(exc, httpx.ProxyError):
        return ConnectError(f"proxy: {message}", "connect")
    if isinstance(exc, httpx.RemoteProtocolError):
        # httpcore says "server disconnected without sending a response" for a close after
        # nothing and for a close after junk or half a head; raw tells them apart, so do we.
        if probe.closed and probe.received == 0:
            return ConnectError("connection closed without a response", "read")
        if probe.closed:
            return ProtocolError("connection closed in the middle of the header section", "read")
        return ProtocolError(message, "read")
    if isinstance(exc, httpx.LocalProtocolError):
        return ProtocolError(message, "write")
    if isinstance(exc, (httpx.ProtocolError, httpx.DecodingError)):
        return ProtocolError(message, "read")
    if isinstance(exc, httpx.NetworkError):
        if isinstance(exc, httpx.ConnectError):
            phase = "tls" if phase == "tls" else "connect"
        elif isinstance(exc, httpx.WriteError):
            phase = "write"
        else:  # ReadError, CloseError
            phase = "read"
        cause = _root_os_error(exc)
        if cause is not None:
            return map_os_error(cause, phase)  # the raw backend's own mapping
        return ConnectError(message or "connection closed by peer", phase)
    if isinstance(exc, httpx.RequestError):  # TransportError and any new kind of request failure
        return ConnectError(message, phase)
    return ProtocolError(f"{type(exc).__name__}: {message}", phase)  # a misuse of httpx: a bug


def _root_os_error(exc: BaseException) -> OSError | None:
    """The deepest OSError in the __cause__/__context__ chain (httpx -> httpcore -> anyio ->
    OSError -> ConnectionRefusedError): the most specific reason for the failure."""
    found: OSError | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found = current
        if isinstance(current, BaseExceptionGroup) and current.exceptions:
            current = current.exceptions[0]
        else:
            current = current.__cause__ or current.__context__
    return found


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[0].lower() + text[1:]


# --- transport and network backend --------------------------------------------------------------


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request/response conversion, exception mapping), running over a
    connection pool we configure: httpx takes no network backend, httpcore's pool does."""

    def __init__(self, pool: _Requests, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context)
        # Fail loudly if a future httpx renames the attribute, instead of silently using a
        # pool without our network backend.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("unsupported httpx version: AsyncHTTPTransport has no _pool")
        self._pool = pool  # type: ignore[assignment]


class _Requests(Protocol):
    """What httpx's transport needs of its pool (httpcore's own request interface)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response: ...

    async def aclose(self) -> None: ...


class _OneShotConnections:
    """A new HTTP/1.1 connection per request, closed with its response (we send Connection:
    close). httpcore's pool scans every connection it holds on each request and each release,
    about a hundred comparisons per request at 200 in flight, for connections that are never
    reused here; and its AsyncHTTPConnection wraps the connect in a lock, two traces and an
    ALPN reset per request. This connects (and shakes hands) itself, then lets httpcore's
    HTTP/1.1 connection do the exchange."""

    def __init__(self, ssl_context: ssl.SSLContext, network: httpcore.AsyncNetworkBackend) -> None:
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl_context = ssl_context
        self._network = network

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        origin = request.url.origin
        host = origin.host.decode("ascii")
        timeout = request.extensions.get("timeout", {}).get("connect")
        stream = await self._network.connect_tcp(host, origin.port, timeout=timeout)
        try:
            if origin.scheme == b"https":
                server_hostname = request.extensions.get("sni_hostname") or host
                stream = await stream.start_tls(self._ssl_context, server_hostname, timeout)
            connection = httpcore.AsyncHTTP11Connection(origin=origin, stream=stream)
            return await connection.handle_async_request(request)
        except BaseException:
            await stream.aclose()
            raise

    async def aclose(self) -> None:
        """Nothing is held between requests."""


def _probe() -> Probe:
    """The current fetch's probe; a throwaway one if I/O happens outside any fetch."""
    return _PROBE.get() or Probe(Trace())


class _TracedNetwork(httpcore.AsyncNetworkBackend):
    """A network backend (AsyncioNetwork by default) with our resolver in front and the Trace
    kept up to date."""

    def __init__(self, resolver: Resolver, network: httpcore.AsyncNetworkBackend) -> None:
        self._resolver = resolver
        self._network = network

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve (DNSError as on raw), then try each address in turn, as raw does."""
        trace = _probe().trace
        trace.phase = "dns"
        if not self._resolver.ready and ip_literal(host) is None:
            await self._resolver.start()  # one-time set-up: no part of this fetch's timings
            trace.restart()
        addresses = await self._resolver.resolve(host)
        now = trace.mark("dns", trace.started)
        trace.phase = "connect"
        deadline = None if timeout is None else time.monotonic() + timeout
        error: httpcore.ConnectError | None = None
        for _family, ip in addresses:
            trace.host_ip = ip
            try:
                stream = await self._network.connect_tcp(
                    ip, port, _remaining(deadline), local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            trace.mark("connect", now)
            return _TracedStream(stream, deadline)
        assert error is not None  # addresses is never empty
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - afetch never asks for a Unix socket
        raise httpcore.UnsupportedProtocol("Unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - we set no retries
        await self._network.sleep(seconds)


class _TracedStream(httpcore.AsyncNetworkStream):
    """A network stream that reports phases, timings and received bytes to the current fetch.

    On an HTTP/1 connection it also holds the bytes up to the final response head to afetch's
    own limits, by feeding them to the raw backend's pure HeadParser as they arrive. h11 still
    parses the response httpx returns; this only makes a hostile server get the same verdict on
    both backends, as early: a banner that is not "HTTP/" fails at its first bytes (h11 would
    wait for a head that never comes), more than MAX_INTERIM_RESPONSES 1xx heads fail (httpcore
    skips any number), and a header section over the http1.py limits fails at the limit.
    """

    def __init__(
        self, stream: httpcore.AsyncNetworkStream, deadline: float | None, http1: bool = True
    ) -> None:
        self._stream = stream
        self._deadline = deadline  # of the connect timeout, which the TLS handshake shares
        # Until the final head is complete; then the body is none of our business.
        self._guard: HeadParser | None = HeadParser() if http1 else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        probe = _probe()
        data = await self._stream.read(max_bytes, timeout)
        if probe.received == 0 and probe.sent is not None:
            probe.trace.mark("ttfb", probe.sent)
        probe.received += len(data)
        if not data:
            probe.closed = True
        elif self._guard is not None and self._guard.feed(data) is not None:
            self._guard = None  # raises ProtocolError, as on raw, before it gets here
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        probe = _probe()
        probe.trace.phase = "write"
        await self._stream.write(buffer, timeout)
        probe.sent = time.perf_counter()
        probe.trace.phase = "read"

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        trace = _probe().trace
        trace.phase = "tls"
        started = time.perf_counter()
        remaining = _remaining(self._deadline) if self._deadline is not None else timeout
        stream = await self._stream.start_tls(ssl_context, server_hostname, remaining)
        trace.mark("tls", started)
        ssl_object = stream.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        return _TracedStream(stream, None, http1=alpn != "h2")  # h2 starts with binary frames

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.0)


__all__ = ["HttpxBackend", "Probe", "map_httpx_error", "map_httpx_exceptions"]


# --- an asyncio network backend for httpcore -----------------------------------------------------


class AsyncioNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network layer on plain asyncio streams.

    httpcore's default goes through anyio, which opens a cancel scope around every read and
    write (about a dozen per request): under a profile that was the largest cost left in the
    httpx backend. The deadlines those scopes enforce are all covered here: connect (with TLS)
    by the caller's connect timeout, and read/write by the engine's total deadline, which is
    never later than httpx's read timeout (set to the same total).
    """

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = None if local_address is None else (local_address, 0)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - afetch never asks for a Unix socket
        raise httpcore.UnsupportedProtocol("Unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - we set no retries
        await asyncio.sleep(seconds)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection as asyncio streams, with httpcore's exception types."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await self._reader.read(max_bytes)
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await self._writer.drain()
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        # A response head is all we want: drop the connection without a goodbye round trip.
        self._writer.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.transport.abort()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            self._writer.transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            return self._reader.at_eof()  # idle-connection check: EOF is what matters
        return None
