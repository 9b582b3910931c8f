"""The scheduler: bounded concurrency over a stream of jobs, shielded delivery, cancellation.

    lines ──► jobs ──(acquire slot)──► task: policy.fetch(target) ──► sink(result), shielded
                                                                            │
                                                          slot released ◄───┘

The producer acquires a slot *before* it creates a task, so at most `concurrency` fetch tasks
exist at any moment however long the input is, and a result is handed to the sink before its
slot frees: a slow reader of the results throttles the run instead of piling results up. The
tasks live in an asyncio.TaskGroup: a failing sink (a closed pipe, a full disk) cancels the
producer and every fetch, and run() raises that failure. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterable,
)

from .backends import Backend, create_backend
from .config import Config
from .jobs import Job, Jobs
from .models import Result
from .ordering import InputOrder, Sink
from .policy import Policy, Tracer
from .resume import Recorded
from .targets import Target, is_skipped

Lines = Iterable[str] | AsyncIterable[str]

# Fetches started in a row before the producer yields to the loop. Free slots are taken without
# a pause: at the start of a run, or when many finish together, the producer would otherwise
# start hundreds of connections before the first of them could send its request, holding every
# one of them back by the time it takes to start all (70 ms at -c 1000). Yielding every 32
# lets the early ones go out while later ones start, for one extra loop pass per 32 fetches.
START_BURST = 32


class Engine:
    """Runs one backend over many jobs; every job yields exactly one Result. An async context
    manager that owns its backend: ``async with Engine(config) as engine: ...``."""

    def __init__(
        self,
        config: Config,
        backend: Backend | None = None,
        recorded: Recorded | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """`recorded` (--resume): targets an earlier run recorded, skipped without a record;
        `tracer` (-v): told every request's steps."""
        self.config = config
        self.backend = backend if backend is not None else create_backend(config)
        self.policy = Policy(config, self.backend, tracer)
        self.jobs = Jobs(config, recorded)
        self._slots = asyncio.Semaphore(config.limits.concurrency)
        self._writes: set[asyncio.Future[None]] = set()
        self.in_flight = 0  # fetch tasks created and not yet done

    async def __aenter__(self) -> Engine:
        await self.backend.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.backend.aclose()

    async def fetch(self, target: Target, index: int = -1) -> Result:
        """One target through the policy: probing, retries, redirects. Never raises for a
        failed fetch."""
        return await self.policy.fetch(target, index)

    async def run(self, lines: Lines, sink: Sink) -> None:
        """Fetch every line and hand each Result to `sink`, at most `concurrency` at a time.

        On cancellation, in-flight fetches are cancelled (and not reported), while results
        already being written finish writing before this returns. If the sink raises (a closed
        pipe, a full disk), the run stops and that exception propagates.
        """
        config = self.config
        order = InputOrder(sink, config.limits.reorder_window) if config.order == "input" else None
        deliver = order.put if order else sink
        failed = False
        try:
            async with asyncio.TaskGroup() as group:
                await self._produce(lines, group, deliver, order)
        except BaseExceptionGroup as group_error:
            failed = True
            # One job's failure cancels the rest, so the first failure is the one to report.
            raise group_error.exceptions[0] from None
        finally:
            while self._writes:
                await asyncio.wait(set(self._writes))
            if order is not None and not failed:
                await order.flush()

    async def _produce(
        self, lines: Lines, group: asyncio.TaskGroup, sink: Sink, order: InputOrder | None
    ) -> None:
        slots, jobs = self._slots, self.jobs
        index = burst = 0
        async for line in aiter_lines(lines):
            if is_skipped(line):
                continue
            for job in jobs.of(line):
                if order is not None:
                    await order.reserve()
                if slots.locked():
                    burst = 0  # acquire() waits: the started fetches run meanwhile
                elif burst == START_BURST:
                    burst = 0
                    await asyncio.sleep(0)
                await slots.acquire()
                self.in_flight += 1
                group.create_task(self._one(job, index, sink))
                index += 1
                burst += 1

    async def _one(self, job: Job, index: int, sink: Sink) -> None:
        try:
            target = job.target
            if isinstance(target, Target):
                result = await self.policy.fetch(target, index, job.expanded)
            else:
                result = self.policy.refuse(job.line, target, index)
            await self._deliver(sink, result)
        finally:
            self.in_flight -= 1
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


async def aiter_lines(lines: Lines) -> AsyncIterator[str]:
    """Any iterable or async iterable of lines, as an async iterator that lets the loop run
    between the lines of a plain list."""
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line
            await asyncio.sleep(0)  # started fetches (or chunks coming back) run meanwhile
