"""A loopback HTTP server that answers every request after a fixed delay (latency-bound case).

It has to be fast enough that ``ab`` gets close to the ideal wall time, or the case measures the
server instead of the clients: an ``asyncio.Protocol`` (no streams), uvloop when importable, and
several worker processes sharing each address through SO_REUSEPORT. The sockets are bound and
listening in the parent before it forks, so "the port accepts" means "the server is up".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from typing import cast

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 3\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"ok\n"
)
# A request head larger than this is not a benchmark client; drop it.
MAX_HEAD_BYTES = 16 * 1024
BACKLOG = 4096


class Delayed(asyncio.Protocol):
    """Read one request head, answer ``delay`` seconds later, close."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None or self.transport is None:
            return
        self.buffer += data
        if b"\r\n\r\n" in self.buffer or b"\n\n" in self.buffer:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.delay, self.respond)
        elif len(self.buffer) > MAX_HEAD_BYTES:
            self.transport.close()

    def respond(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


async def serve(sockets: list[socket.socket], delay: float) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: Delayed(delay), sock=sock, backlog=BACKLOG)
        for sock in sockets
    ]
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    try:
        await stop
    finally:
        for server in servers:
            server.close()


def listen(hosts: list[str], port: int) -> list[socket.socket]:
    sockets = []
    for host in hosts:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def worker(sockets: list[socket.socket], delay: float) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(sockets, delay))
    else:
        uvloop.run(serve(sockets, delay))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hosts", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    hosts = args.hosts.split(",")
    if not all(host.startswith("127.") for host in hosts):
        parser.error("loopback addresses only")

    # One socket set per worker, all bound before forking: the kernel spreads new connections
    # across the SO_REUSEPORT group.
    per_worker = [listen(hosts, args.port) for _ in range(args.processes)]
    children = []
    for index, sockets in enumerate(per_worker):
        pid = os.fork()
        if pid == 0:
            for other_index, other in enumerate(per_worker):
                if other_index != index:
                    for sock in other:
                        sock.close()
            worker(sockets, args.delay)
            os._exit(0)
        children.append(pid)
    for sockets in per_worker:
        for sock in sockets:
            sock.close()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


if __name__ == "__main__":
    sys.exit(main())
