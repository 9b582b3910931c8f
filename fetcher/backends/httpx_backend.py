"""The httpx backend: httpx's models and httpcore's connections, plugged together only where
both libraries document a way in.

httpx and httpcore do the HTTP (h11; h2 with --http2). afetch adds what a header survey needs:

- `HeadTransport`, an `httpx.AsyncBaseTransport` (httpx's custom-transport extension point):
  an httpx.Request in, an httpx.Response out, over a new httpcore HTTP/1.1 connection per
  request or, with --http2, httpcore's connection pool. Any httpx.AsyncClient can use it; the
  backend calls it directly, because a client adds only what a survey must not do (collect
  cookies, build a redirect request for every 3xx, run event hooks);
- `TracedNetwork`, an `httpcore.AsyncNetworkBackend` on asyncio streams: it resolves names with
  the raw backend's resolver, tries the addresses in order, bounds TCP + TLS by the connect
  timeout together (httpcore gives each its own), records dns/connect/tls timings and the peer,
  raises afetch's errors where an OSError or ssl error happens, and holds HTTP/1 heads to the
  limits of http1.py with the raw backend's own parser, so a hostile server gets the same
  verdict on both backends. Proxies are its work too, not httpcore's: an HTTP proxy's CONNECT
  (`TracedStream.tunnel`) and a SOCKS5 proxy's handshake (`TracedNetwork.connect_socks`, the
  raw backend's python-socks path) run under the same connect deadline and limits as on raw.
  httpcore's AsyncSOCKSProxy would not: its handshake has no deadline, always sends the
  target's name (socks5h), and lets socksio's exceptions through;
- a `Probe` per fetch, passed as httpcore's `trace` request extension: it learns from httpcore
  when the request is written and the head awaited (the phase, ttfb);
- `HTTPCORE_ERRORS`, the one table from httpcore's (and httpx's) exceptions to afetch's.

The engine owns the total deadline: httpcore's timeouts apply per read, so a server dripping a
byte a second would defeat them alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpcore
import httpx

from .. import proxy as proxying
from .. import verbose
from ..config import Config, Request
from ..errors import (
    ConnectError,
    FetchError,
    FetchTimeout,
    InvalidInput,
    Phase,
    ProtocolError,
    map_os_error,
)
from ..http1 import MAX_HEADERS, MAX_LINE_BYTES, HeadParser, ResponseHead, decode_field
from ..models import Trace
from ..resolve import Address, Resolver, ip_literal
from ..targets import Target
from ..tls import TLSInfo
from .base import Backend, TLSReporter, make_ssl_context

# How much of a proxy's CONNECT answer one read takes: a 200 with a header or two fits.
TUNNEL_READ_BYTES = 64 * 1024
# Same grace as the raw backend: once the head is in hand, a slow goodbye must not cost it.
CLOSE_GRACE = 1.0
# Request headers HTTP/2 forbids (RFC 9113 section 8.2.2); h2 refuses to send them, so with
# --http2 they are left out (our own "Connection: close" among them).
# TracedStream.get_extra_info key: the TLSInfo of its handshake, for the HTTP/2 fetches that
# reuse the connection (they never shake hands themselves).
TLS_INFO = "afetch_tls_info"
H2_FORBIDDEN_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


class HttpxBackend(Backend):
    """HeadTransport behind the Backend interface: same records, same error kinds as raw."""

    name = "httpx"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        request = config.request
        self._headers = request_headers(request)
        timeouts = config.timeouts
        # connect: TCP + TLS (see TracedNetwork). read/write/pool: backstops only; the engine's
        # deadline ends the fetch at `total` whatever these do.
        self._timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.total, write=timeouts.total, pool=timeouts.total
        ).as_dict()
        self._resolver = Resolver(config.nameservers, pins=config.pins)
        alpn = ("http/1.1", "h2") if request.http2 else ("http/1.1",)  # as httpcore offers
        # With --http2 httpcore sets the context's ALPN on each connection: its own context.
        ssl_context = make_ssl_context(
            request.verify, request.cafile, alpn, shared=not request.http2
        )
        reporter = TLSReporter(config, alpn) if request.tls_info else None
        if reporter is not None:
            reporter.prepare()  # like the CA store above: before any fetch
        network = TracedNetwork(self._resolver, reporter)
        connections: Connections
        if request.http2:
            # HTTP/2 multiplexes requests to one origin over one connection: that needs a pool.
            connections = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                # The engine never has more than `concurrency` fetches in flight.
                max_connections=config.limits.concurrency,
                # Every target is a new host as a rule; an idle connection is only a held fd.
                max_keepalive_connections=0,
                http1=True,
                http2=True,
                network_backend=network,
            )
        else:
            proxies = proxying.Proxies(config.proxy, config.proxy_env)
            connections = OneShotConnections(ssl_context, network, proxies)
        self.transport = HeadTransport(connections)

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        probe = Probe(trace)
        # Until the network backend starts resolving, the request waits for a pool slot.
        trace.phase = "connect"
        token = _PROBE.set(probe)
        try:
            with map_httpcore_exceptions(self._timeout):
                # Exactly our headers, in the raw backend's order: Host (added by httpx from
                # the URL), User-Agent, Accept, Connection, then the -H ones.
                request = httpx.Request(
                    self.config.request.method,
                    target.url,
                    headers=self._headers,
                    extensions={"timeout": self._timeout, "trace": probe},
                )
            response = await self.transport.handle_async_request(request)
            try:
                return response_head(response, trace)
            finally:
                await _close(response)
        finally:
            _PROBE.reset(token)

    async def __aenter__(self) -> HttpxBackend:
        # httpcore's first request imports anyio's asyncio backend (its locks need one): about
        # 25 ms on the loop, which every fetch then in flight counted in its timings. Done
        # here, before any fetch, instead: a run pays it once either way. current_time() asks
        # for the backend on every anyio 4.x (Lock() does only since about 4.5).
        anyio.current_time()
        return self

    async def aclose(self) -> None:
        try:
            await self.transport.aclose()
        finally:
            await self._resolver.aclose()


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
        if stream is not None and trace.tls is None:
            trace.tls = stream.get_extra_info(TLS_INFO)
    return ResponseHead(
        http_version=response.http_version.removeprefix("HTTP/"),  # "1.0", "1.1", "2"
        status_code=response.status_code,
        reason=decode_field(response.extensions.get("reason_phrase", b"")),
        headers=headers,
    )


async def _close(response: httpx.Response) -> None:
    """Close the response (and with it the connection) without reading the body."""
    with suppress(FetchError, TimeoutError):
        async with asyncio.timeout(CLOSE_GRACE):
            await response.aclose()


# --- what one fetch learns ----------------------------------------------------------------------


@dataclass(slots=True)
class Probe:
    """One fetch's Trace, kept up to date from httpcore's `trace` request extension (which
    httpcore calls with "http11.send_request_headers.started" and the like) and from the
    network backend, which finds the probe of the fetch it connects for in `_PROBE`."""

    trace: Trace
    sent: float | None = None  # when the request was written: ttfb counts from here

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace extension: one event of the request's exchange."""
        if event.endswith("send_request_headers.started"):
            self.trace.phase = "write"
            if self.trace.log is not None:
                request = info["request"]
                version = "HTTP/2" if event.startswith("http2") else "HTTP/1.1"
                line = f"{request.method.decode()} {request.url.target.decode()} {version}"
                verbose.sent_fields(self.trace, line, request.headers)
        elif event.endswith("receive_response_headers.started"):
            self.sent = time.perf_counter()
            self.trace.phase = "read"
        elif event == "http2.receive_response_headers.complete" and self.sent is not None:
            # HTTP/2 frames of every stream share one connection: the first byte read may be
            # the server's SETTINGS, so ttfb is to this stream's head (HTTP/1: first byte).
            self.trace.mark("ttfb", self.sent)


# The probe of the fetch running in the current task. httpcore opens connections and does their
# I/O in the task that sent the request, and calls the network backend with no request at hand.
_PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("afetch_probe", default=None)


# --- errors -------------------------------------------------------------------------------------

# httpcore's exceptions (and httpx's one its models raise) -> afetch's kind and phase, the most
# specific class first. Network failures never reach this table as httpcore's exceptions:
# TracedNetwork raises afetch's own where the OSError happens (WriteFailed carries one through
# httpcore), and httpcore passes exceptions it does not know through unchanged.
HTTPCORE_ERRORS: tuple[tuple[type[Exception], type[FetchError], Phase | None], ...] = (
    (httpcore.PoolTimeout, FetchTimeout, "connect"),  # no free connection: still connecting
    (httpcore.ConnectTimeout, FetchTimeout, "connect"),
    (httpcore.ReadTimeout, FetchTimeout, "read"),
    (httpcore.WriteTimeout, FetchTimeout, "write"),
    (httpcore.TimeoutException, FetchTimeout, "read"),
    (httpcore.ConnectError, ConnectError, "connect"),
    (httpcore.WriteError, ConnectError, "write"),
    (httpcore.ReadError, ConnectError, "read"),
    (httpcore.NetworkError, ConnectError, "read"),
    (httpcore.ProxyError, ConnectError, "connect"),
    (httpcore.LocalProtocolError, ProtocolError, "write"),  # h11/h2 refused our request
    (httpcore.RemoteProtocolError, ProtocolError, "read"),  # the server's bytes are not HTTP
    (httpcore.ProtocolError, ProtocolError, "read"),
    (httpcore.UnsupportedProtocol, InvalidInput, None),  # a scheme other than http(s)
    (httpx.InvalidURL, InvalidInput, None),  # httpx.Request refused the URL
)
# What a timeout says: the request's timeout extension key it ran out of, and the message.
_TIMEOUT_MESSAGES: dict[type[Exception], tuple[str, str]] = {
    httpcore.PoolTimeout: ("pool", "no free connection within {:g} s"),
    httpcore.ConnectTimeout: ("connect", "connect not done within {:g} s"),
    httpcore.ReadTimeout: ("read", "no response headers within {:g} s"),
    httpcore.WriteTimeout: ("write", "write not done within {:g} s"),
}


class WriteFailed(httpcore.WriteError):
    """A failed write, as afetch's error, in httpcore's type: its HTTP/1.1 connection then
    still reads, for the early answer a server may have sent before closing."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(error.message)
        self.error = error


def map_httpcore_error(exc: Exception, timeouts: dict[str, float | None]) -> FetchError | None:
    """The FetchError for an httpcore (or httpx) exception per HTTPCORE_ERRORS; None for one the
    table does not know (ConnectionNotAvailable, which httpcore retries itself): a bug."""
    if isinstance(exc, WriteFailed):
        return exc.error
    for foreign, ours, phase in HTTPCORE_ERRORS:
        if not isinstance(exc, foreign):
            continue
        if ours is FetchTimeout:
            key, template = _TIMEOUT_MESSAGES.get(foreign, ("", ""))
            seconds = timeouts.get(key)
            if not template or seconds is None:
                return FetchTimeout(f"{phase} not done in time", phase)
            return FetchTimeout(template.format(seconds), phase)
        return ours(_describe(exc), phase)
    return None


@contextmanager
def map_httpcore_exceptions(timeouts: dict[str, float | None]) -> Iterator[None]:
    """Re-raise httpcore/httpx exceptions from the block as FetchErrors (HTTPCORE_ERRORS)."""
    try:
        yield
    except FetchError:
        raise
    except Exception as exc:
        error = map_httpcore_error(exc, timeouts)
        if error is None:
            raise
        raise error from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[0].lower() + text[1:]


# --- the transport ------------------------------------------------------------------------------


class Connections(Protocol):
    """What HeadTransport needs of its connections: httpcore's own request interface."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response: ...

    async def aclose(self) -> None: ...


class HeadTransport(httpx.AsyncBaseTransport):
    """An httpx transport over httpcore connections of our choosing, raising afetch's errors.

    What httpx's own AsyncHTTPTransport does (request and response conversion, one exception
    table), over connections it cannot be given through its public API.
    """

    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with map_httpcore_exceptions(timeouts):
            response = await self.connections.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response, timeouts),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.connections.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    """An httpcore response body as httpx wants it, with the same exception table."""

    def __init__(self, response: httpcore.Response, timeouts: dict[str, float | None]) -> None:
        self._response = response
        self._timeouts = timeouts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with map_httpcore_exceptions(self._timeouts):
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        with map_httpcore_exceptions(self._timeouts):
            await self._response.aclose()


class OneShotConnections:
    """A new HTTP/1.1 connection per request, closed with its response (we send Connection:
    close). httpcore's pool scans every connection it holds on each request and each release,
    about a hundred comparisons per request at 200 in flight, for connections that are never
    reused here; and its AsyncHTTPConnection wraps the connect in a lock, two traces and an
    ALPN reset per request. This connects (and shakes hands) itself, then lets httpcore's
    HTTP/1.1 connection do the exchange."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        network: TracedNetwork,
        proxies: proxying.Proxies | None = None,
    ) -> None:
        self._ssl_context = ssl_context  # offering http/1.1 by ALPN (make_ssl_context's)
        self._network = network
        self._proxies = proxies or proxying.Proxies(None, False)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if request.url.scheme not in (b"http", b"https"):  # before .origin, which needs a port
            scheme = request.url.scheme.decode("ascii", "replace")
            raise httpcore.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        origin = request.url.origin
        host = origin.host.decode("ascii")
        timeout = request.extensions.get("timeout", {}).get("connect")
        proxy = self._proxies.for_target(origin.scheme.decode("ascii"), host, origin.port)
        stream: httpcore.AsyncNetworkStream
        if proxy is None:
            stream = await self._network.connect_tcp(host, origin.port, timeout=timeout)
        elif proxy.socks:  # a tunnel to the target: the rest as without a proxy
            stream = await self._network.connect_socks(proxy, host, origin.port, timeout)
        else:
            return await self._through(proxy, request, timeout)
        try:
            if origin.scheme == b"https":
                server_hostname = request.extensions.get("sni_hostname") or host
                stream = await stream.start_tls(self._ssl_context, server_hostname, timeout)
            connection = httpcore.AsyncHTTP11Connection(origin=origin, stream=stream)
            return await connection.handle_async_request(request)
        except BaseException:
            await stream.aclose()
            raise

    async def _through(
        self, proxy: proxying.Proxy, request: httpcore.Request, timeout: float | None
    ) -> httpcore.Response:
        """The request through an HTTP proxy: https in a CONNECT tunnel, with the target's
        name for SNI and the certificate; http in absolute form, to the proxy itself."""
        origin = request.url.origin
        probe = _PROBE.get()
        if probe is not None:
            probe.trace.phase = "proxy"
        stream: httpcore.AsyncNetworkStream
        with proxying.blamed_on(proxy):
            stream = await self._network.connect_tcp(proxy.host, proxy.port, timeout=timeout)
        try:
            if origin.scheme == b"https":
                if not isinstance(stream, TracedStream):  # pragma: no cover - ours always is
                    raise TypeError("a proxy tunnel needs afetch's TracedStream")
                host, port = origin.host.decode("ascii"), origin.port
                await stream.tunnel(proxying.connect_request(_target(host, port), proxy), proxy)
                server_hostname = request.extensions.get("sni_hostname") or host
                stream = await stream.start_tls(self._ssl_context, server_hostname, timeout)
            else:
                url = request.url
                request = httpcore.Request(
                    method=request.method,
                    url=httpcore.URL(
                        scheme=url.scheme, host=url.host, port=url.port, target=bytes(url)
                    ),
                    headers=[*request.headers, *_raw(proxying.proxy_authorization(proxy))],
                    content=request.stream,
                    extensions=request.extensions,
                )
            connection = httpcore.AsyncHTTP11Connection(origin=origin, stream=stream)
            return await connection.handle_async_request(request)
        except BaseException:
            await stream.aclose()
            raise

    async def aclose(self) -> None:
        """Nothing is held between requests."""


def _target(host: str, port: int) -> Target:
    """The tunnel's end as a Target, for connect_request."""
    return Target(input=host, scheme="https", host=host.strip("[]"), port=port)


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers]


# --- the network backend ------------------------------------------------------------------------


class TracedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network layer on plain asyncio streams, reporting to the current fetch.

    On asyncio, not anyio (httpcore's default), whose cancel scopes around every read and write
    (about a dozen per request) were under a profile the largest cost left in this backend. The
    deadlines those scopes enforce are covered here: connect and TLS by the connect timeout,
    read and write by the engine's total deadline (never later than httpcore's read timeout).
    """

    def __init__(self, resolver: Resolver, tls: TLSReporter | None = None) -> None:
        self._resolver = resolver
        self._tls = tls  # None: --no-tls-info

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> TracedStream:
        """Resolve (DNSError as on raw), then try each address in turn within `timeout`, as raw
        does: a refused or unreachable address moves on to the next."""
        probe = _PROBE.get() or Probe(Trace())  # outside any fetch: a throwaway one
        trace = probe.trace
        trace.phase = "dns"
        addresses = await self._resolve(host, port, trace)
        now = trace.mark("dns", trace.started)
        trace.phase = "connect"
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        local = None if local_address is None else (local_address, 0)
        failure: OSError | None = None
        try:
            async with asyncio.timeout_at(deadline):
                for _family, ip in addresses:
                    trace.host_ip = ip
                    verbose.trying(trace, ip, port)
                    try:
                        reader, writer = await asyncio.open_connection(ip, port, local_addr=local)
                    except OSError as exc:
                        failure = exc
                        continue
                    trace.mark("connect", now)
                    verbose.connected(trace, ip, port)
                    return TracedStream(reader, writer, probe, deadline, timeout, self._tls)
        except TimeoutError as exc:
            raise FetchTimeout(f"connect not done within {timeout:g} s", "connect") from exc
        assert failure is not None  # addresses is never empty
        raise map_os_error(failure, "connect") from failure

    async def connect_socks(
        self, proxy: proxying.Proxy, host: str, port: int, timeout: float | None
    ) -> TracedStream:
        """connect_tcp's work through a SOCKS5 proxy, as the raw backend does it: the proxy's
        name resolved (a failure the proxy's), for socks5 the target's too (the target's),
        then within `timeout` the handshake (socks.py) and TLS later on the same deadline."""
        from .. import socks

        probe = _PROBE.get() or Probe(Trace())
        trace = probe.trace
        trace.phase = "dns"
        with proxying.blamed_on(proxy):
            addresses = await self._resolve(proxy.host, proxy.port, trace)
        destination = host
        if not proxy.remote_dns:  # socks5: the proxy is sent the target's (first) address
            destination = (await self._resolve(host, port, trace))[0][1]
        now = trace.mark("dns", trace.started)
        trace.phase = "proxy"
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                sock = await socks.open_tunnel(proxy, addresses, destination, port, trace, timeout)
                reader, writer = await asyncio.open_connection(sock=sock)
        except FetchError:  # FetchTimeout among them: a TimeoutError, not the one below
            raise
        except TimeoutError as exc:
            raise FetchTimeout(f"proxy not done within {timeout:g} s", "proxy") from exc
        trace.mark("connect", now)
        return TracedStream(reader, writer, probe, deadline, timeout, self._tls, tunnelled=True)

    async def _resolve(self, host: str, port: int, trace: Trace) -> list[Address]:
        """The addresses to try for host:port: pinned (--resolve), the literal, or resolved."""
        addresses = self._resolver.pinned(host, port)
        how = "pinned"
        if addresses is None:
            if not self._resolver.ready and ip_literal(host) is None:
                await self._resolver.start()  # one-time set-up: no part of this fetch's timings
                trace.restart()
            addresses = await self._resolver.resolve(host)
            how = "" if ip_literal(host) else "resolved"
        verbose.resolved(trace, host, addresses, how)
        return addresses

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - afetch never asks for a Unix socket
        raise httpcore.UnsupportedProtocol("Unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - we set no retries
        await asyncio.sleep(seconds)


class TracedStream(httpcore.AsyncNetworkStream):
    """One connection as asyncio streams: afetch's errors where an OSError happens, timings to
    the fetch that opened it.

    On HTTP/1 it also holds the bytes up to the final response head to afetch's own limits, by
    feeding them to the raw backend's pure HeadParser as they arrive. h11 still parses the
    response httpx returns; this only makes a hostile server get the same verdict on both
    backends, as early: a banner that is not "HTTP/" fails at its first bytes (h11 would wait
    for a head that never comes), more than MAX_INTERIM_RESPONSES 1xx heads fail (httpcore
    skips any number), a header section over the http1.py limits fails at the limit, and a close
    before the head is complete fails as on raw (h11 says "server disconnected" for all).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        probe: Probe,
        deadline: float | None,
        connect_timeout: float | None,
        tls: TLSReporter | None = None,
        tunnelled: bool = False,
    ) -> None:
        self._tls = tls
        self._facts: TLSInfo | None = None  # what the handshake showed
        self._reader = reader
        self._writer = writer
        self._probe = probe  # an HTTP/1 connection serves only the fetch that opened it
        self._deadline = deadline  # of the connect timeout, which the TLS handshake shares
        self._connect_timeout = connect_timeout
        # Until the final head is complete; then the body is none of our business.
        self._guard: HeadParser | None = HeadParser()
        self._received = 0  # bytes read so far
        self._tunnelled = tunnelled  # through a proxy's tunnel (CONNECT, SOCKS5)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = await self._reader.read(max_bytes)
        except OSError as exc:
            raise map_os_error(exc, "read") from exc
        if not data:
            if self._guard is not None:  # the HTTP/1 head is not complete
                self._guard.feed_eof()
                raise ConnectError("connection closed without a response", "read")
            if not self._received:  # HTTP/2, closed before a single frame
                raise ConnectError("connection closed without a response", "read")
            return data
        if self._guard is not None:
            sent = self._probe.sent
            if not self._received and sent is not None:
                self._probe.trace.mark("ttfb", sent)
            if self._guard.feed(data) is not None:  # raises ProtocolError, as on raw
                self._guard = None
        self._received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await self._writer.drain()
        except OSError as exc:
            raise WriteFailed(map_os_error(exc, "write")) from exc

    async def aclose(self) -> None:
        # A response head is all we want: drop the connection without a goodbye round trip.
        self._writer.transport.abort()

    async def tunnel(self, request: bytes, proxy: proxying.Proxy) -> None:
        """Send CONNECT to the proxy at the other end and read its answer, within the connect
        timeout (which TLS inside the tunnel then shares); the head guard and the ttfb clock
        start afresh for the target's response."""
        self._probe.trace.phase = "proxy"
        parser = HeadParser()
        head: ResponseHead | None = None
        with proxying.blamed_on(proxy):
            try:
                async with asyncio.timeout_at(self._deadline):
                    self._writer.write(request)
                    await self._writer.drain()
                    verbose.tunnel(self._probe.trace, request)
                    while head is None:
                        data = await self._reader.read(TUNNEL_READ_BYTES)
                        if not data:
                            parser.feed_eof()
                            raise ConnectError("connection closed without a response", "read")
                        head = parser.feed(data)
            except TimeoutError as exc:
                self._writer.transport.abort()
                raise FetchTimeout(
                    f"proxy not done within {self._connect_timeout:g} s", "proxy"
                ) from exc
            except OSError as exc:
                raise map_os_error(exc, "read") from exc
            verbose.answered(self._probe.trace, head)
            proxying.check_tunnel(head, proxy)
        self._guard = HeadParser()
        self._received = 0
        self._tunnelled = True  # the peer is the proxy: no certificate capture from it

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        trace = self._probe.trace
        trace.phase = "tls"
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(self._deadline):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.transport.abort()
            raise FetchTimeout(f"tls not done within {self._connect_timeout:g} s", "tls") from exc
        except OSError as exc:  # ssl.SSLError is one
            peer = self._writer.get_extra_info("peername")
            self._writer.transport.abort()
            if self._tls is not None:
                self._tls.failed(trace, exc, server_hostname or "")
                if self._tunnelled and trace.tls is not None:
                    trace.tls.capture_error = proxying.NOT_CAPTURED_THROUGH_PROXY
                elif peer:
                    await self._tls.capture(trace, peer[1])
            raise map_os_error(exc, "tls") from exc
        trace.mark("tls", started)
        ssl_object = self._writer.get_extra_info("ssl_object")
        verbose.tls(trace, ssl_object)
        if self._tls is not None:
            self._tls.completed(trace, ssl_object, server_hostname or "")
            self._facts = trace.tls  # for the fetches that reuse this (HTTP/2) connection
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._guard = None  # HTTP/2 starts with binary frames
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == TLS_INFO:
            return self._facts
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


__all__ = [
    "HTTPCORE_ERRORS",
    "HeadTransport",
    "HttpxBackend",
    "OneShotConnections",
    "Probe",
    "TracedNetwork",
    "TracedStream",
    "WriteFailed",
    "map_httpcore_error",
    "map_httpcore_exceptions",
]
