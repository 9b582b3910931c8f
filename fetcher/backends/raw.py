"""The raw backend: asyncio streams and the pure HTTP/1.x parser in http1.py."""

from __future__ import annotations

import asyncio
import time

from ..config import Config
from ..errors import ConnectError, FetchError, FetchTimeout, map_exceptions
from ..http1 import HeadParser, ResponseHead, build_request
from ..models import Trace
from ..resolve import Address, Resolver
from ..targets import Target
from .base import Backend, make_ssl_context

READ_CHUNK = 64 * 1024
# How long a successful fetch waits for the connection to finish closing (TLS close_notify)
# before dropping it: the head is already in hand, a slow goodbye must not turn it into a timeout.
CLOSE_GRACE = 1.0


class RawBackend(Backend):
    """One TCP (+TLS) connection per target: write the request, read the head, close."""

    name = "raw"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        request = config.request
        self._headers = request.header_lines()
        self._ssl = make_ssl_context(request.verify, request.cafile)
        self._ssl.set_alpn_protocols(["http/1.1"])
        self._resolver = Resolver()

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        trace.phase = "dns"
        addresses = await self._resolver.resolve(target.host)
        now = trace.mark("dns", trace.started)

        reader, writer = await self._connect(target, addresses, trace, now)
        ok = False
        try:
            request = self.config.request
            payload = build_request(
                request.method, target.path, target.authority, self._headers, request.http_version
            )
            trace.phase = "write"
            with map_exceptions("write"):
                writer.write(payload)
            sent = time.perf_counter()
            trace.phase = "read"
            head = await self._read_head(reader, trace, sent)
            ok = True
            return head
        finally:
            await _close(writer, graceful=ok)

    async def _connect(
        self, target: Target, addresses: list[Address], trace: Trace, started: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP connect to the first address that answers, then TLS; both within the connect
        timeout, as curl's --connect-timeout."""
        trace.phase = "connect"
        try:
            async with asyncio.timeout(self.config.timeouts.connect):
                reader, writer = await self._open(addresses, target.port, trace)
                now = trace.mark("connect", started)
                if target.scheme == "https":
                    trace.phase = "tls"
                    try:
                        with map_exceptions("tls"):
                            await writer.start_tls(self._ssl, server_hostname=target.host)
                    except BaseException:
                        writer.transport.abort()
                        raise
                    trace.mark("tls", now)
        except TimeoutError as exc:
            if isinstance(exc, FetchError):
                raise
            seconds = self.config.timeouts.connect
            raise FetchTimeout(
                f"{trace.phase} not done within {seconds:g} s", trace.phase
            ) from None
        return reader, writer

    @staticmethod
    async def _open(
        addresses: list[Address], port: int, trace: Trace
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        error: FetchError | None = None
        for _family, ip in addresses:
            trace.host_ip = ip
            try:
                with map_exceptions("connect"):
                    return await asyncio.open_connection(ip, port, limit=READ_CHUNK)
            except FetchError as exc:
                error = exc
        assert error is not None  # addresses is never empty
        raise error

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader, trace: Trace, sent: float) -> ResponseHead:
        parser = HeadParser()
        first = True
        while True:
            with map_exceptions("read"):
                data = await reader.read(READ_CHUNK)
            if first:
                trace.mark("ttfb", sent)
                first = False
            if not data:
                parser.feed_eof()
                raise ConnectError("connection closed without a response", "read")
            head = parser.feed(data)
            if head is not None:
                return head


async def _close(writer: asyncio.StreamWriter, graceful: bool) -> None:
    """Close after success (bounded wait); abort at once after a failure or cancellation, so
    closing never stretches a deadline."""
    if not graceful:
        writer.transport.abort()
        return
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
