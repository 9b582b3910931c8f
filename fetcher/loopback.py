"""Scripted HTTP servers and a tiny DNS server on 127.0.0.1, for the demo, tests and bench.

Each HTTP server runs a *script* per connection: an async function given the connection's
reader and writer. `LoopbackDNS` answers A/AAAA queries from a dict. All servers of a
`LoopbackHosts` share one event loop on a background thread, so synchronous code (the demo, the
CLI tests, the benchmark) can start them and then run afetch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import Future
from typing import Any

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LOOPBACK = "127.0.0.1"
# Scripts that wait "forever" wait this long at most, so no server outlives a test run.
FOREVER = 60.0


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read up to the end of the request head (or EOF); requests here never have bodies."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return b""


def response(status: str = "200 OK", headers: list[tuple[str, str]] | None = None) -> bytes:
    """A complete HTTP/1.1 response head with a short body."""
    body = b"hello\n"
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replies(data: bytes, *, wait_for_request: bool = True) -> Script:
    """Read the request, send `data`, close."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if wait_for_request:
            await read_request(reader)
        writer.write(data)
        await writer.drain()

    return script


def recording(data: bytes, seen: list[bytes]) -> Script:
    """Like replies(data), and append each request head received to `seen`."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(data)
        await writer.drain()

    return script


def silent() -> Script:
    """Accept, read the request, never answer (until FOREVER or the client leaves)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.wait_for(reader.read(), FOREVER)

    return script


def drips(data: bytes, interval: float) -> Script:
    """Send `data` one byte per `interval` seconds."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(interval)

    return script


def delayed(data: bytes, delay: float) -> Script:
    """Answer with `data` after `delay` seconds."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()

    return script


# DNS wire format (RFC 1035 4.1): the few constants a loopback A/AAAA server needs.
_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_QTYPES = {1: "A", 28: "AAAA"}
_QR, _AA, _RA, _RD, _OPCODE = 0x8000, 0x0400, 0x0080, 0x0100, 0x7800
NOERROR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 2, 3, 4, 5
DNS_RECEIVE_BUFFER = 4 << 20


class LoopbackDNS(asyncio.DatagramProtocol):
    """A UDP DNS server answering A and AAAA queries for `records` (name -> IP addresses).

    Other names get NXDOMAIN; a known name without an address of the asked family gets an empty
    NOERROR (NODATA); names in `rcodes` get that response code; names in `silent` are never
    answered; names in `garbage` get a malformed reply (the right id and question, then an
    answer cut off after its first byte), which no client can parse. Every query that arrives
    is logged in `queries` as (name, "A" | "AAAA" | number).
    Answers carry TTL 0 so c-ares' own cache keeps none of them (it does keep an empty NODATA
    answer for a while: count the queries of a type the name has).
    UDP only: answers are small, so no client ever needs to retry over TCP.
    """

    def __init__(
        self,
        records: Mapping[str, Collection[str]],
        *,
        silent: Collection[str] = (),
        rcodes: Mapping[str, int] | None = None,
        garbage: Collection[str] = (),
        delay: float = 0.0,
    ) -> None:
        self.records = {name.lower(): list(ips) for name, ips in records.items()}
        self.silent = {name.lower() for name in silent}
        self.garbage = {name.lower() for name in garbage}
        self.rcodes = {name.lower(): code for name, code in (rcodes or {}).items()}
        self.delay = delay  # seconds before each answer: a distant or slow server
        self.queries: list[tuple[str, str | int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def count(self, name: str, qtype: str | None = None) -> int:
        """How many queries asked for `name` (of type `qtype`, or of any type)."""
        name = name.lower()
        return sum(1 for q in self.queries if q[0] == name and qtype in (None, q[1]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            reply = self.answer(data)
        except (struct.error, IndexError, UnicodeDecodeError):
            return  # not a query we can parse: drop it, as a real server would
        if reply is None or self.transport is None:
            return
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)
        else:
            self.transport.sendto(reply, addr)

    def answer(self, query: bytes) -> bytes | None:
        """The response to one query message, or None to stay silent."""
        ident, flags, qdcount, _, _, _ = _HEADER.unpack_from(query)
        labels, offset = [], _HEADER.size
        while length := query[offset]:
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii"))
            offset += 1 + length
        qtype, _qclass = struct.unpack_from("!HH", query, offset + 1)
        question = query[_HEADER.size : offset + 5]
        name = ".".join(labels).lower()
        self.queries.append((name, _QTYPES.get(qtype, qtype)))
        if qdcount != 1 or name in self.silent:
            return None

        answers: list[bytes] = []
        if name in self.rcodes:
            rcode = self.rcodes[name]
        elif name not in self.records:
            rcode = NXDOMAIN
        else:
            rcode = NOERROR
            for ip in self.records[name]:
                packed = ipaddress.ip_address(ip).packed
                if (qtype, len(packed)) in ((1, 4), (28, 16)):
                    # Name as a pointer to the question (offset 12), class IN, TTL 0.
                    answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 0, len(packed)))
                    answers[-1] += packed
        if name in self.garbage:
            answers = [b"\xc0"]  # one answer promised, one byte of it sent
        reply_flags = _QR | _AA | _RA | (flags & (_OPCODE | _RD)) | rcode
        header = _HEADER.pack(ident, reply_flags, 1, len(answers), 0, 0)
        return header + question + b"".join(answers)


class LoopbackHosts:
    """A background event loop serving scripted hosts on 127.0.0.1 ephemeral ports."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closed_ports: list[socket.socket] = []
        self._datagrams: list[asyncio.DatagramTransport] = []

    def refused(self) -> int:
        """A port that refuses connections: bound (so nobody else takes it) but not listening."""
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        self._closed_ports.append(sock)
        port: int = sock.getsockname()[1]
        return port

    def serve(self, script: Script, tls: ssl.SSLContext | None = None) -> int:
        """Start a server running `script` per connection; return its port."""
        port: int = self._call(self._start(script, tls))
        return port

    def serve_dns(self, server: LoopbackDNS, host: str = LOOPBACK, port: int = 0) -> int:
        """Start `server` on UDP `host`:`port` (an ephemeral port by default); return the port."""
        bound: int = self._call(self._start_dns(server, host, port))
        return bound

    async def _start_dns(self, server: LoopbackDNS, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=(host, port))
        # A client with hundreds of lookups in flight sends them in one burst; the default
        # receive buffer (~200 KB, about 1 KB of it per datagram) would drop the tail, and the
        # client would wait out its retry timeout. The kernel caps this at net.core.rmem_max.
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, DNS_RECEIVE_BUFFER
        )
        self._datagrams.append(transport)
        return int(transport.get_extra_info("sockname")[1])

    def _call(self, coro: Awaitable[Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout=10)

    async def _start(self, script: Script, tls: ssl.SSLContext | None) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._handlers.add(task)
            try:
                await script(reader, writer)
            except (OSError, TimeoutError, asyncio.CancelledError):
                pass  # the client left or the host is shutting down
            finally:
                writer.transport.abort()
                if task is not None:
                    self._handlers.discard(task)

        server = await asyncio.start_server(handle, LOOPBACK, 0, ssl=tls)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop every server and the loop; connections still open are dropped."""

        async def stop() -> None:
            for server in self._servers:
                server.close()
            for transport in self._datagrams:
                transport.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        self._call(stop())
        for sock in self._closed_ports:
            sock.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> LoopbackHosts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
