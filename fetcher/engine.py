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
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from dataclasses import replace
from urllib.parse import urljoin, urlsplit

from .backends import Backend, create_backend
from .config import Config
from .deadlines import Deadlines
from .errors import (
    ConnectError,
    FetchError,
    FetchTimeout,
    InternalError,
    InvalidInput,
    ProtocolError,
    TLSError,
    TooManyRedirects,
)
from .http1 import ResponseHead
from .models import Redirect, Result, Trace
from .pacing import PerHostLimiter, RateLimiter
from .resume import Recorded
from .targets import DEFAULT_PORTS, Target, is_skipped, parse_target

# Where results go: a plain function (the CLI's writer) or a coroutine function (a queue).
Sink = Callable[[Result], Awaitable[None] | None]
Lines = Iterable[str] | AsyncIterable[str]

# Statuses whose Location -L follows. 300 Multiple Choices and 304 Not Modified are answers.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Retry backoff: the n-th retry waits about RETRY_BASE * 2**n seconds, capped at RETRY_CAP.
# Half a second first is long enough for a dropped SYN or a restarting server, and the cap
# keeps --retries 10 from stalling a slot for minutes.
RETRY_BASE = 0.5
RETRY_CAP = 10.0
# Fetches started in a row before the producer yields to the loop. Free slots are taken without
# a pause: at the start of a run, or when many finish together, the producer would otherwise
# start hundreds of connections before the first of them could send its request, holding every
# one of them back by the time it takes to start all (70 ms at -c 1000). Yielding every 32
# lets the early ones go out while later ones start, for one extra loop pass per 32 fetches.
START_BURST = 32


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (0-based): exponential, with "equal jitter" (half
    fixed, half random) so many targets failing together do not come back in lockstep."""
    delay = min(RETRY_CAP, RETRY_BASE * 2.0**retry)
    return delay / 2 + random.uniform(0, delay / 2)


class Engine:
    """Runs one backend over many targets; every input line yields exactly one Result."""

    def __init__(
        self, config: Config, backend: Backend | None = None, recorded: Recorded | None = None
    ) -> None:
        """`recorded` (--resume): targets an earlier run recorded, skipped without a record."""
        self.config = config
        self._recorded = recorded
        self.backend = backend if backend is not None else create_backend(config)
        self._slots = asyncio.Semaphore(config.limits.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Future[None]] = set()
        # The total deadline of every request (what asyncio.wait_for would do, at a fraction of
        # the cost: see deadlines.py).
        self._deadlines = Deadlines(config.timeouts.total)
        limits = config.limits
        self._rate = RateLimiter(limits.rate) if limits.rate else None
        self._per_host = PerHostLimiter(limits.per_host) if limits.per_host else None
        # Targets without a scheme are tried with https first under --scheme auto.
        self._default_scheme = "https" if config.scheme == "auto" else config.scheme
        # No probing, retries or redirects: one request per target, without the layers that
        # implement them (each await passes through every frame of the chain).
        self._single_request = (
            config.scheme != "auto" and limits.retries == 0 and not config.request.follow_redirects
        )

    async def fetch(self, target: Target, index: int = -1) -> Result:
        """Fetch one target: scheme probing, retries and redirects, each request through the
        backend under the total deadline. Never raises: a failed fetch is this target's error,
        and so is a bug met on the way (an internal-error), which must not end the run."""
        result = Result(
            target.input, target, self.config.request.method, self.backend.name, index=index
        )
        try:
            if self._single_request:
                head = await self._request(target, result)
            else:
                head = await self._follow(target, result)
        except FetchError as exc:
            result.error = exc
        except Exception as exc:  # a bug of ours on this target's path: its record, not the run
            result.error = InternalError.wrap(exc)
        else:
            result.status_code = head.status_code
            result.reason = head.reason
            result.http_version = head.http_version
            result.headers = head.headers
        result.timestamp = time.time()
        return result

    async def _follow(self, target: Target, result: Result) -> ResponseHead:
        """The first request (probing the scheme if asked), then, with -L, one request per
        redirect. Relative locations resolve against the URL that answered; only http and
        https locations are followed, other ones end the chain with the 3xx as the answer."""
        head = await self._retrying(self._probe, target, result)
        request = self.config.request
        if not request.follow_redirects:
            return head
        current = result.final_target or target
        while head.status_code in REDIRECT_STATUSES:
            location = next((v for k, v in head.headers if k.lower() == "location"), None)
            if location is None:
                break
            try:
                url = urljoin(current.url, location.strip())
                scheme = urlsplit(url).scheme.lower()
            except ValueError as exc:  # a '[' or ']' out of place: "Invalid IPv6 URL"
                raise ProtocolError(
                    f"cannot follow Location {location!r}: {exc}", "redirect"
                ) from None
            if scheme not in DEFAULT_PORTS:
                break
            if len(result.redirects) >= request.max_redirects:
                raise TooManyRedirects(
                    f"more than {request.max_redirects} redirects (last to {url})", "redirect"
                )
            try:
                hop = replace(parse_target(url), input=target.input)
            except InvalidInput as exc:
                raise ProtocolError(
                    f"cannot follow Location {location!r}: {exc.message}", "redirect"
                ) from None
            result.redirects.append(Redirect(current.url, head.status_code, location))
            head = await self._retrying(self._request, hop, result)
            current = hop
        return head

    async def _probe(self, target: Target, result: Result) -> ResponseHead:
        """--scheme auto: https first; http only if https could not connect or shake hands.

        A handshake that times out counts as failed: the port took the connection but does not
        speak TLS (many plain HTTP servers wait silently for a request line that a ClientHello
        never completes). Any other timeout, and any HTTP answer, is https's answer and stands.
        """
        if self.config.scheme != "auto" or target.explicit_scheme:
            return await self._request(target, result)
        try:
            return await self._request(target, result)
        except (ConnectError, TLSError):
            pass
        except FetchTimeout as exc:
            if exc.phase != "tls":
                raise
        port = target.port if target.explicit_port else DEFAULT_PORTS["http"]
        # The record's url says which scheme answered (or, if none did, was tried last).
        result.target = fallback = replace(target, scheme="http", port=port)
        return await self._request(fallback, result)

    async def _retrying(
        self,
        attempt: Callable[[Target, Result], Awaitable[ResponseHead]],
        target: Target,
        result: Result,
    ) -> ResponseHead:
        """Try again after a connection error or a timeout, with exponential backoff and jitter,
        up to --retries times. An HTTP status, whatever it is, is an answer: never retried."""
        retries = self.config.limits.retries
        for tried in range(retries + 1):
            try:
                return await attempt(target, result)
            except (ConnectError, FetchTimeout):
                if tried == retries:
                    raise
            await asyncio.sleep(backoff(tried))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, target: Target, result: Result) -> ResponseHead:
        """One request through the backend, paced by --per-host and --rate, under the total
        deadline. The result keeps what the last request learned (peer, timings, URL)."""
        async with self._per_host_slot(target):
            if self._rate is not None:
                await self._rate.acquire()
            trace = Trace()
            deadline = self._deadlines.start()
            try:
                return await self.backend.fetch(target, trace)
            except FetchError:
                raise
            except asyncio.CancelledError:
                if not self._deadlines.expired(deadline):
                    raise  # the run is being cancelled: this fetch is not reported
                seconds = self.config.timeouts.total
                phase = trace.phase
                what = "no response headers" if phase == "read" else f"{phase} not done"
                raise FetchTimeout(f"{what} within {seconds:g} s", phase) from None
            except Exception as exc:  # a bug in a backend: the phase it was in, for the record
                raise InternalError.wrap(exc, trace.phase) from exc
            finally:
                self._deadlines.stop(deadline)
                trace.mark("total", trace.started)
                result.host_ip = trace.host_ip
                result.timings = trace.timings
                result.final_target = target

    def _per_host_slot(self, target: Target) -> AbstractAsyncContextManager[None]:
        if self._per_host is None:
            return nullcontext()
        return self._per_host.hold((target.host, target.port))

    async def run(self, lines: Lines, sink: Sink) -> None:
        """Fetch every line and hand each Result to `sink`, at most `concurrency` at a time.

        On cancellation, in-flight fetches are cancelled (and not reported), while results
        already being written finish writing before this returns. If the sink raises (a closed
        pipe, a full disk), the run stops and that exception propagates.
        """
        order = _InputOrder(sink, self.config.limits.reorder_window) if self._ordered else None
        deliver = order.put if order else sink
        runner = asyncio.current_task()
        start = asyncio.get_running_loop().create_task  # without asyncio.create_task's wrapper
        failure: list[BaseException] = []
        stopping = False

        def settle(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if task.cancelled() or task.exception() is None or failure:
                return
            failure.append(task.exception())  # type: ignore[arg-type]
            if runner is not None and not stopping:
                runner.cancel()  # stop reading input; the except clause below re-raises

        index = burst = 0
        try:
            async for line in _aiter(lines):
                if is_skipped(line):
                    continue
                for job, expanded in self._jobs(line):
                    if order is not None:
                        await order.reserve()
                    if self._slots.locked():
                        burst = 0  # acquire() waits: the started fetches run meanwhile
                    elif burst == START_BURST:
                        burst = 0
                        await asyncio.sleep(0)
                    await self._slots.acquire()
                    task = start(self._one(line, job, expanded, index, deliver))
                    self._tasks.add(task)
                    task.add_done_callback(settle)
                    index += 1
                    burst += 1
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

    def _jobs(self, line: str) -> Iterator[tuple[Target | InvalidInput, bool]]:
        """What one input line becomes: a target, one target per --ports port for a bare host
        (flagged as expanded), or the reason it is no target; less what --resume found already
        recorded. A generator, so a long port list is never materialised."""
        recorded = self._recorded
        try:
            target = parse_target(line, self._default_scheme)
        except InvalidInput as exc:
            if recorded is None or not recorded.take(line.strip()):
                yield exc, False
            return
        if not expands(target, self.config):
            if recorded is None or not recorded.take(target.input):
                yield target, False
            return
        for port in self.config.ports:
            if recorded is None or not recorded.take(target.input, port):
                yield replace(target, port=port, explicit_port=True), True

    async def _one(
        self, line: str, job: Target | InvalidInput, expanded: bool, index: int, sink: Sink
    ) -> None:
        try:
            if isinstance(job, InvalidInput):
                result = Result(line.strip(), None, self.config.request.method, self.backend.name)
                result.index, result.error = index, job
            else:
                result = await self.fetch(job, index)
                result.expanded = expanded
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


def expands(target: Target, config: Config) -> bool:
    """Whether --ports turns this target into one target per port: a bare host does, a line
    that names its scheme or port does not."""
    return bool(config.ports) and not (target.explicit_port or target.explicit_scheme)


def targets_per_line(config: Config) -> Callable[[str], int]:
    """How many targets (and so records) one non-blank input line makes: for the progress
    line's total, without fetching anything."""
    scheme = "https" if config.scheme == "auto" else config.scheme

    def count(line: str) -> int:
        if not config.ports:
            return 1
        try:
            target = parse_target(line, scheme)
        except InvalidInput:
            return 1
        return len(config.ports) if expands(target, config) else 1

    return count


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
