"""Where a raw fetch's time goes, layer by layer: CPU microseconds per request.

    .venv/bin/python bench/micro.py [--targets 20000] [--concurrency 200]

Against the bench's own loopback nginx, under uvloop, three in-process measurements:

  bare protocol   an asyncio.Protocol that connects, writes a request, waits for the blank
                  line and closes: the ceiling for any single-process Python client here;
  raw backend     fetcher's RawBackend.fetch alone, under a semaphore (no engine, no output);
  engine + JSON   the whole engine with a stub backend that answers at once and the JSON
                  Lines writer to /dev/null: what afetch adds per target besides the I/O.

CPU time (process_time) is reported next to requests/s because it is far less disturbed than
wall time by whatever else a shared machine is running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import Nginx, ensure_tools  # noqa: E402

from fetcher.backends.base import Backend  # noqa: E402
from fetcher.backends.raw import RawBackend  # noqa: E402
from fetcher.config import Config, Limits  # noqa: E402
from fetcher.engine import Engine  # noqa: E402
from fetcher.http1 import ResponseHead  # noqa: E402
from fetcher.models import Trace  # noqa: E402
from fetcher.output import Format, RecordWriter, format_jsonl  # noqa: E402
from fetcher.targets import Target, parse_target  # noqa: E402


class _Bare(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None], request: bytes) -> None:
        self.done, self.request, self.buffer = done, request, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" in self.buffer and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed"))


async def _bounded(jobs: list[Callable[[], Awaitable[object]]], concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        finally:
            slots.release()

    for job in jobs:
        await slots.acquire()
        task = asyncio.create_task(one(job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


def _measure(name: str, count: int, main: Callable[[], Awaitable[None]]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{name:<15} {count / wall:>9,.0f} req/s {cpu / count * 1e6:>7.1f} us CPU/request")


def bare(targets: list[Target], concurrency: int) -> Callable[[], Awaitable[None]]:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def job(target: Target) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                done: asyncio.Future[None] = loop.create_future()
                request = f"GET {target.path} HTTP/1.1\r\nHost: {target.authority}\r\n\r\n"
                transport, _ = await loop.create_connection(
                    lambda: _Bare(done, request.encode()), target.host, target.port
                )
                try:
                    await done
                finally:
                    transport.close()

            return run

        await _bounded([job(t) for t in targets], concurrency)

    return main


def raw(targets: list[Target], concurrency: int) -> Callable[[], Awaitable[None]]:
    async def main() -> None:
        backend = RawBackend(Config(limits=Limits(concurrency=concurrency)))
        await _bounded([lambda t=t: backend.fetch(t, Trace()) for t in targets], concurrency)
        await backend.aclose()

    return main


class _Instant(Backend):
    name = "stub"

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        return ResponseHead("1.1", 200, "OK", [("Server", "nginx"), ("Content-Length", "3")])


def engine(lines: list[str], concurrency: int) -> Callable[[], Awaitable[None]]:
    async def main() -> None:
        config = Config(limits=Limits(concurrency=concurrency))
        with open(os.devnull, "wb") as devnull:
            writer = RecordWriter(Format(format_jsonl), stdout=devnull)
            await Engine(config, _Instant(config)).run(lines, writer.write)
            writer.close()

    return main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory() as tmp:
        nginx = Nginx(Path(tmp))
        nginx.start()
        try:
            hosts = nginx.hosts
            lines = [f"{hosts[i % len(hosts)]}:{nginx.port}/{i}" for i in range(args.targets)]
            targets = [parse_target(line) for line in lines]
            for _ in range(2):  # twice: the second pass shows the noise
                _measure("bare protocol", len(targets), bare(targets, args.concurrency))
                _measure("raw backend", len(targets), raw(targets, args.concurrency))
                _measure("engine + JSON", len(lines), engine(lines, args.concurrency))
        finally:
            nginx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
