"""The scheduler: bounded concurrency over a stream of input lines, deadlines, shielded output.

    lines ──► producer ──(acquire slot)──► task: fetch under a deadline ──► sink(result), shielded
                                                                                 │
                                                               slot released ◄───┘

The producer acquires a slot *before* it creates a task, so at most `concurrency` fetch tasks
exist at any moment however long the input is, and a result is handed to the sink before its
slot frees: a slow reader of the results throttles the run instead of piling results up.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from contextlib import aclosing

from .backends import Backend, create_backend
from .config import Config
from .deadlines import Deadlines
from .errors import FetchError, FetchTimeout, InvalidInput, ProtocolError
from .models import Result, Trace
from .targets import Target, is_skipped, parse_target

# Where results go: a plain function (the CLI's writer) or a coroutine function (a queue).
Sink = Callable[[Result], Awaitable[None] | None]
Lines = Iterable[str] | AsyncIterable[str]


class Engine:
    """Runs one backend over many targets; every input line yields exactly one Result."""

    def __init__(self, config: Config, backend: Backend | None = None) -> None:
        self.config = config
        self.backend = backend if backend is not None else create_backend(config)
        self._slots = asyncio.Semaphore(config.limits.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Future[None]] = set()
        # The total deadline of every fetch (what asyncio.wait_for would do, at a fraction of
        # the cost: see deadlines.py).
        self._deadlines = Deadlines(config.timeouts.total)

    async def fetch(self, target: Target, index: int = -1) -> Result:
        """Fetch one target under the total deadline; never raises for a failed fetch."""
        config = self.config
        method = config.request.method
        trace = Trace()
        result = Result(target.input, target, method, self.backend.name, index=index)
        deadline = self._deadlines.start()
        try:
            head = await self.backend.fetch(target, trace)
        except FetchError as exc:
            result.error = exc
        except asyncio.CancelledError:
            if not self._deadlines.expired(deadline):
                raise  # the run is being cancelled: this fetch is not reported
            seconds = config.timeouts.total
            what = "no response headers" if trace.phase == "read" else f"{trace.phase} not done"
            result.error = FetchTimeout(f"{what} within {seconds:g} s", trace.phase)
        except Exception as exc:  # a bug in a backend must cost one record, not the run
            result.error = ProtocolError(f"internal error: {type(exc).__name__}: {exc}", "read")
        else:
            result.status_code = head.status_code
            result.reason = head.reason
            result.http_version = head.http_version
            result.headers = head.headers
        finally:
            self._deadlines.stop(deadline)
        result.host_ip = trace.host_ip
        trace.mark("total", trace.started)
        result.timings = trace.timings
        result.timestamp = time.time()
        return result

    async def run(self, lines: Lines, sink: Sink) -> None:
        """Fetch every line and hand each Result to `sink`, at most `concurrency` at a time.

        On cancellation, in-flight fetches are cancelled (and not reported), while results
        already being written finish writing before this returns. If the sink raises (a closed
        pipe, a full disk), the run stops and that exception propagates.
        """
        order = _InputOrder(sink, self.config.limits.reorder_window) if self._ordered else None
        deliver = order.put if order else sink
        runner = asyncio.current_task()
        failure: list[BaseException] = []
        stopping = False

        def settle(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled() or task.exception() is None or failure:
                return
            failure.append(task.exception())  # type: ignore[arg-type]
            if runner is not None and not stopping:
                runner.cancel()  # stop reading input; the except clause below re-raises

        index = 0
        try:
            async for line in _aiter(lines):
                if is_skipped(line):
                    continue
                if order is not None:
                    await order.reserve()
                await self._slots.acquire()
                task = asyncio.create_task(self._one(line, index, deliver))
                self._tasks.add(task)
                task.add_done_callback(settle)
                index += 1
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            if failure and runner is not None and runner.uncancel() == 0:
                raise failure[0] from None
            raise
        finally:
            stopping = True
            for task in self._tasks:
                task.cancel()
            while self._tasks:
                await asyncio.wait(set(self._tasks))
            while self._writes:
                await asyncio.wait(set(self._writes))
            if order is not None and not failure:
                await order.flush()
        if failure:
            raise failure[0]

    async def results(self, lines: Lines) -> AsyncGenerator[Result, None]:
        """The library form of run(): an async iterator of Results, in completion order (or in
        input order with Config(order="input")). Leave it early with contextlib.aclosing()
        to cancel the fetches still running."""
        queue: asyncio.Queue[Result | None] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            try:
                await self.run(lines, queue.put)
            finally:
                task = asyncio.current_task()
                if task is not None and not task.cancelling():
                    await queue.put(None)

        runner = asyncio.create_task(produce())
        try:
            while (result := await queue.get()) is not None:
                yield result
            await runner  # re-raise an input error, if any
        finally:
            runner.cancel()
            # Keep taking results so writes already under way can finish, and the run end.
            while not runner.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({runner, getter}, return_when=asyncio.FIRST_COMPLETED)
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
            if not runner.cancelled():
                runner.exception()

    @property
    def _ordered(self) -> bool:
        return self.config.order == "input"

    async def _one(self, line: str, index: int, sink: Sink) -> None:
        try:
            try:
                target = parse_target(line, self.config.scheme)
            except InvalidInput as exc:
                result = Result(line.strip(), None, self.config.request.method, self.backend.name)
                result.index, result.error = index, exc
            else:
                result = await self.fetch(target, index)
            await self._deliver(sink, result)
        finally:
            self._slots.release()

    async def _deliver(self, sink: Sink, result: Result) -> None:
        """Hand a result to the sink so that cancelling the run cannot lose or tear it: a plain
        function sink runs to completion with no await point; an async sink runs shielded, and
        run() waits for it before returning."""
        pending = sink(result)
        if pending is None:
            return
        write = asyncio.ensure_future(pending)
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        await asyncio.shield(write)


class _InputOrder:
    """Re-sequences results into input order. `reserve()` before starting target i blocks while
    `window` results are held or in flight, so the buffer never outgrows the window."""

    def __init__(self, sink: Sink, window: int) -> None:
        self._sink = sink
        self._window = asyncio.Semaphore(window)
        self._next = 0
        self._held: list[tuple[int, Result]] = []
        self._lock = asyncio.Lock()

    async def reserve(self) -> None:
        await self._window.acquire()

    async def flush(self) -> None:
        """After an interrupted run: write what is held, in order, skipping the gaps left by
        fetches that were cancelled (they were never reported, so --resume fetches them)."""
        async with self._lock:
            while self._held:
                await _call(self._sink, heapq.heappop(self._held)[1])

    async def put(self, result: Result) -> None:
        heapq.heappush(self._held, (result.index, result))
        async with self._lock:
            while self._held and self._held[0][0] == self._next:
                _, ready = heapq.heappop(self._held)
                await _call(self._sink, ready)
                self._next += 1
                self._window.release()


async def _call(sink: Sink, result: Result) -> None:
    pending = sink(result)
    if pending is not None:
        await pending


async def _aiter(lines: Lines) -> AsyncIterator[str]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line
            await asyncio.sleep(0)  # let started fetches run while a long list is consumed


async def fetch_all(
    lines: Lines, config: Config | None = None, backend: Backend | None = None
) -> AsyncIterator[Result]:
    """Fetch the response heads of `lines` (host, host:port or URL each); yield Results.

    >>> async for result in fetch_all(["example.com", "https://example.org/"]):
    ...     print(result.label, result.status_code or result.error)
    """
    engine = Engine(config or Config(), backend)
    async with engine.backend, aclosing(engine.results(lines)) as results:
        async for result in results:
            yield result
