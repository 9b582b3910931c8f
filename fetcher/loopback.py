"""Scripted HTTP servers on 127.0.0.1, for the demo and the test suite.

Each server runs a *script* per connection: an async function given the connection's reader
and writer. All servers of a `LoopbackHosts` share one event loop on a background thread, so
synchronous code (the demo, the CLI tests, the benchmark) can start them and then run afetch.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
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


class LoopbackHosts:
    """A background event loop serving scripted hosts on 127.0.0.1 ephemeral ports."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closed_ports: list[socket.socket] = []

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
