"""The raw backend: one TCP (+TLS) connection per target, driven by an asyncio Protocol.

A Protocol instead of streams: the response head arrives in one or two `data_received` calls
that feed the pure parser in http1.py directly, with no StreamReader buffer, no reader task
wake-ups and no drain() round trips in between. Profiling showed the streams layer costing more
than the whole parse.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from .. import proxy as proxying
from .. import verbose
from ..config import Config
from ..deadlines import Deadlines
from ..errors import ConnectError, FetchError, FetchTimeout, TLSError, map_os_error
from ..http1 import HeadParser, ResponseHead, build_request
from ..models import Trace
from ..resolve import Address, Resolver, ip_literal
from ..targets import Target
from .base import Backend, TLSReporter, make_ssl_context

ALPN = ("http/1.1",)


class _HeadProtocol(asyncio.Protocol):
    """Feeds received bytes to a HeadParser and settles `head` with the result or the error.

    For plain HTTP it writes the request the moment the connection is made, and it settles
    `head` the moment the head is complete: no loop iteration is spent between the socket
    events and the work they allow.
    """

    __slots__ = ("head", "transport", "parser", "trace", "request", "sent")

    def __init__(
        self, head: asyncio.Future[ResponseHead], trace: Trace, request: bytes | None
    ) -> None:
        self.head = head
        self.trace = trace
        self.parser = HeadParser()
        self.transport: asyncio.Transport | None = None
        self.request = request  # written on connect; None when TLS must come first
        self.sent = 0.0  # perf_counter when the request was written; 0 before

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.request is not None:
            self.send(self.request)

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.trace.phase = "write"
        self.transport.write(request)
        self.sent = time.perf_counter()
        self.trace.phase = "read"

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return
        if self.sent and "ttfb" not in self.trace.timings:
            self.trace.mark("ttfb", self.sent)
        try:
            head = self.parser.feed(data)
        except FetchError as exc:
            self._settle_error(exc)
            return
        if head is not None:
            self.head.set_result(head)

    def eof_received(self) -> bool | None:
        if not self.head.done():
            try:
                self.parser.feed_eof()
                raise ConnectError("connection closed without a response", "read")
            except FetchError as exc:
                self._settle_error(exc)
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head.done():
            return
        if exc is None:
            self.eof_received()
        else:
            self._settle_error(map_os_error(exc, self.trace.phase))

    def _settle_error(self, exc: FetchError) -> None:
        if not self.head.done():
            self.head.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()  # stop reading whatever else the peer sends


class RawBackend(Backend):
    """Connect, write the request, read the head, close: the least work per target."""

    name = "raw"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        request = config.request
        # The request is the same for every target but for its path and Host: built once.
        # (With -H Host, only the path varies: the template holds no "{host}" to fill in.)
        head = build_request(
            request.method, "{path}", "{host}", request.header_lines(), request.http_version
        )
        line, _, rest = head.partition(b" {path}")
        self._request_line = line
        self._sends_authority = request.host_header is None
        if self._sends_authority:
            self._host_prefix, _, self._request_tail = rest.partition(b"{host}")
        else:
            self._host_prefix, self._request_tail = rest, b""
        self._ssl_context: ssl.SSLContext | None = None  # loaded for the first https target
        self._ssl_loading: asyncio.Future[ssl.SSLContext] | None = None
        self._resolver = Resolver(config.nameservers, pins=config.pins)
        self._connect_deadlines = Deadlines(config.timeouts.connect)
        self._tls = TLSReporter(config, ALPN) if request.tls_info else None
        self._proxies = proxying.Proxies(config.proxy, config.proxy_env)

    async def aclose(self) -> None:
        await self._resolver.aclose()

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        tls = target.scheme == "https"
        if tls and self._ssl_context is None:
            await self._load_tls_context()
            trace.restart()
        trace.phase = "dns"
        proxy = self._proxies.for_target(target.scheme, target.host, target.port)
        host, port = (proxy.host, proxy.port) if proxy else (target.host, target.port)
        pinned = self._resolver.pinned(host, port)
        addresses, how = pinned or ip_literal(host), "pinned" if pinned else ""
        if addresses is None:
            if not self._resolver.ready:
                await self._resolver.start()
                trace.restart()
            with proxying.blamed_on(proxy):
                addresses, how = await self._resolver.resolve(host), "resolved"
        verbose.resolved(trace, host, addresses, how)
        destination = None  # what a SOCKS5 proxy is asked to connect to
        if proxy is not None and proxy.socks:
            destination = target.host if proxy.remote_dns else await self._address(target, trace)
        now = trace.mark("dns", trace.started)

        # Through an HTTP proxy, an http target is asked in absolute form, of the proxy.
        asks_proxy = proxy is not None and not proxy.socks and not tls
        path = target.url if asks_proxy else target.path
        request = b"%s %s%s" % (self._request_line, path.encode(), self._host_prefix)
        if self._sends_authority:
            request += target.authority.encode() + self._request_tail
        if asks_proxy and proxy is not None and proxy.authorization:
            request = (
                request[:-2] + b"Proxy-Authorization: %s\r\n\r\n" % proxy.authorization.encode()
            )
        loop = asyncio.get_running_loop()
        head: asyncio.Future[ResponseHead] = loop.create_future()
        protocol = _HeadProtocol(head, trace, None if tls else request)
        try:
            transport = await self._connect(
                loop, target, addresses, protocol, trace, now, proxy, destination
            )
        except BaseException as exc:
            # Nobody will await `head` now: settle it quietly, or an error the protocol put in
            # it during a failed handshake is logged as "Future exception was never retrieved".
            if not head.done():
                head.cancel()
            elif not head.cancelled():
                head.exception()
            if isinstance(exc, TLSError) and self._tls is not None:
                if proxy is None:
                    await self._tls.capture(trace, target.port)
                elif trace.tls is not None:  # another tunnel would be needed: not worth it
                    trace.tls.capture_error = proxying.NOT_CAPTURED_THROUGH_PROXY
            raise
        try:
            if tls:
                protocol.send(request)
            verbose.sent(trace, request)
            return await head
        finally:
            # Dropped, not closed: a TLS close() starts a close_notify exchange that outlives
            # the fetch (up to its shutdown timeout), holding a descriptor the concurrency limit
            # no longer counts, and is cut off unclosed if the loop ends first. The head is all
            # we came for; the httpx backend drops its connections the same way.
            transport.abort()

    async def _address(self, target: Target, trace: Trace) -> str:
        """The target's address, for a socks5 proxy (which is sent an address, not a name):
        its first one, resolved as a direct connect's would be."""
        pinned = self._resolver.pinned(target.host, target.port)
        addresses, how = pinned or ip_literal(target.host), "pinned" if pinned else ""
        if addresses is None:
            if not self._resolver.ready:
                await self._resolver.start()
                trace.restart()
            addresses, how = await self._resolver.resolve(target.host), "resolved"
        verbose.resolved(trace, target.host, addresses, how)
        return addresses[0][1]

    async def _load_tls_context(self) -> None:
        """Load the TLS context on a thread, once, when the first https target needs it.

        Loading the system's CA store takes about 20 ms: a run of plain http targets never
        pays it, and OpenSSL reads the file without holding the GIL, so the fetches in flight
        meanwhile are not held up (on the loop, their timings grew by those 20 ms).
        """
        if self._ssl_loading is None:
            loop = asyncio.get_running_loop()
            self._ssl_loading = loop.run_in_executor(None, self._make_tls_context)
        # Shielded: one fetch's deadline must not cancel the loading the others await.
        self._ssl_context = await asyncio.shield(self._ssl_loading)

    def _make_tls_context(self) -> ssl.SSLContext:
        request = self.config.request
        context = make_ssl_context(request.verify, request.cafile, ALPN)
        if self._tls is not None:
            self._tls.prepare()  # on this thread too: the first record must not wait for it
        return context

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        target: Target,
        addresses: list[Address],
        protocol: _HeadProtocol,
        trace: Trace,
        started: float,
        proxy: proxying.Proxy | None = None,
        destination: str | None = None,
    ) -> asyncio.Transport:
        """TCP connect to the first address that answers (through an HTTP proxy: to the proxy,
        and for https the CONNECT tunnel; through a SOCKS5 one: to the proxy, and a tunnel to
        `destination`), then TLS; all within the connect timeout, as curl's --connect-timeout."""
        trace.phase = "proxy" if proxy else "connect"
        deadline = self._connect_deadlines.start()
        try:
            if proxy is None:  # the usual case: no context manager on the hot path (5 us)
                transport = await self._open(loop, addresses, target.port, protocol, trace)
                verbose.connected(trace, trace.host_ip, target.port)
            elif destination is not None:  # SOCKS5
                transport = await self._socks(
                    loop, proxy, addresses, destination, target, protocol, trace
                )
            else:
                with proxying.blamed_on(proxy):
                    transport = await self._open(loop, addresses, proxy.port, protocol, trace)
                verbose.connected(trace, trace.host_ip, proxy.port)
            if proxy and not proxy.socks and target.scheme == "https":
                try:
                    await self._tunnel(loop, protocol, target, proxy)
                except BaseException:
                    transport.abort()
                    raise
            now = trace.mark("connect", started)
            if target.scheme == "https":
                trace.phase = "tls"
                assert self._ssl_context is not None  # fetch() loaded it first
                try:
                    tls = await loop.start_tls(
                        transport,
                        protocol,
                        self._ssl_context,
                        server_hostname=target.host,
                    )
                except BaseException as exc:
                    transport.abort()
                    if not isinstance(exc, (OSError, EOFError)):
                        raise
                    if self._tls is not None:
                        self._tls.failed(trace, exc, target.host)
                    raise map_os_error(exc, "tls") from exc
                if tls is None:  # the peer closed during the handshake
                    raise ConnectError("connection closed during the TLS handshake", "tls")
                transport = tls
                protocol.transport = transport
                verbose.tls(trace, transport.get_extra_info("ssl_object"))
                trace.mark("tls", now)
                if self._tls is not None:
                    self._tls.completed(trace, tls.get_extra_info("ssl_object"), target.host)
        except asyncio.CancelledError:
            if not self._connect_deadlines.expired(deadline):
                raise
            seconds = self.config.timeouts.connect
            raise FetchTimeout(
                f"{trace.phase} not done within {seconds:g} s", trace.phase
            ) from None
        finally:
            self._connect_deadlines.stop(deadline)
        return transport

    async def _socks(
        self,
        loop: asyncio.AbstractEventLoop,
        proxy: proxying.Proxy,
        addresses: list[Address],
        destination: str,
        target: Target,
        protocol: _HeadProtocol,
        trace: Trace,
    ) -> asyncio.Transport:
        """The SOCKS5 handshake (python-socks, on a socket of its own), then the protocol on
        that socket: for http it writes the request the moment it is made, as direct."""
        from .. import socks

        timeout = self.config.timeouts.connect
        sock = await socks.open_tunnel(proxy, addresses, destination, target.port, trace, timeout)
        try:
            transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()
            raise
        return transport

    @staticmethod
    async def _tunnel(
        loop: asyncio.AbstractEventLoop,
        protocol: _HeadProtocol,
        target: Target,
        proxy: proxying.Proxy,
    ) -> None:
        """CONNECT through the proxy, its answer read by the protocol's own parser (so held
        to the same limits), then a fresh parser for the target's response."""
        answer: asyncio.Future[ResponseHead] = loop.create_future()
        head, protocol.head = protocol.head, answer
        try:
            assert protocol.transport is not None
            request = proxying.connect_request(target, proxy)
            protocol.transport.write(request)
            verbose.tunnel(protocol.trace, request)
            with proxying.blamed_on(proxy):
                tunnel = await answer
                verbose.answered(protocol.trace, tunnel)
                proxying.check_tunnel(tunnel, proxy)
        finally:
            protocol.head = head
            protocol.parser = HeadParser()
            if answer.done() and not answer.cancelled():
                answer.exception()  # seen: a failure is raised above already

    @staticmethod
    async def _open(
        loop: asyncio.AbstractEventLoop,
        addresses: list[Address],
        port: int,
        protocol: _HeadProtocol,
        trace: Trace,
    ) -> asyncio.Transport:
        error: FetchError | None = None
        for _family, ip in addresses:
            trace.host_ip = ip
            verbose.trying(trace, ip, port)
            try:
                transport, _ = await loop.create_connection(lambda: protocol, ip, port)
                return transport
            except OSError as exc:
                error = map_os_error(exc, "connect")
        assert error is not None  # addresses is never empty
        raise error
