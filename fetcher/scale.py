"""Fan-out: one run's lines in chunks on worker processes or a Dask cluster, with this process
the one reader of the input and the one writer of the output, every record exactly once.

    lines ──► chunks ──► Executor.submit(run_chunk) ──► ChunkResult ──► writer, tally, progress
     (read lazily;     (at most `in_flight` out;       (whole chunks   (in chunk order under
      by host lane      a worker runs its own          only: formatted  --order input)
      under --per-host)  engine on its own loop)       bytes + a Tally)

A chunk is a pure call, picklable both ways: (Config, lines) in, the chunk's records already
formatted for each destination and its Tally out. Any concurrent.futures.Executor runs it (a
ProcessPoolExecutor for --workers, Dask's `Client.get_executor()` for --cluster). Records are
written only once their whole chunk came back, so a worker that dies costs a re-run of its
chunk: nothing is written twice, nothing is lost. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import contextlib
import gc
import hashlib
import importlib
import importlib.util
import io
import math
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.resource_tracker
import os
import pickle
import pkgutil
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from .config import LOCAL_CLUSTER, Config, ConfigError, Fanout
from .engine import Engine, Lines, aiter_lines
from .errors import InvalidInput
from .jobs import Jobs
from .models import Result
from .output import RecordWriter, encoder, make_format, stdout_filter
from .policy import Tracer
from .resume import Recorded
from .stats import Tally
from .targets import is_skipped, parse_target
from .version import __version__

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

# Chunks given out per slot (a worker process, a Dask thread): one running, one queued behind
# it, so a worker never waits for the parent between two chunks. With --rate each slot gets one
# (the rate is shared among the chunks out, and a queued chunk would take a share unused).
IN_FLIGHT_PER_SLOT = 2
# Targets per chunk, per unit of the chunk's concurrency. A chunk waits for its slowest target,
# so its tail idles the worker (up to --timeout for a silent host): larger chunks spread the
# tail over more targets. Smaller ones spread a short input evenly over the workers and keep
# less in memory (about 0.5 KB a record, in the worker and again here). 10: 1 000 targets a
# chunk at -c 200 over 2 workers; against the bench's nginx (20 000 targets, idle 2-core
# machine) 10 and 40 ran alike, 4 300-5 500 req/s, and 40 left a 10 000-target input in 3
# chunks, two of them on one worker.
CHUNK_PER_CONCURRENCY = 10
MIN_CHUNK = 64
# At most this many targets a chunk (-c 1000 over 2 workers: 5 000), so the records of the
# chunks out stay a few MB.
MAX_CHUNK = 5_000
# The input read ahead of the chunks given out, in chunks of a pool's steady size a slot (see
# FanOut._windowed): what it holds when the input ends is cut into ever smaller chunks, so the
# workers end together. At most MAX_LOOKAHEAD targets: a few MB of lines on any cluster.
LOOKAHEAD_PER_SLOT = 1
MAX_LOOKAHEAD = 50_000
# How often a worker's chunk checks whether the run was interrupted, and how long an
# interrupted run waits for its workers to hand back what they finished.
STOP_POLL_S = 0.05
STOP_WAIT_S = 10.0
# Pool breaks (a worker process died) in a row, with no chunk coming back between them, after
# which the run gives up: a chunk that kills every worker it meets would loop forever.
MAX_BREAKS = 3
# What every WorkersFailed ends with: what the user still has, and how to go on.
CHUNKS_BACK_WRITTEN = (
    "the records of the chunks back are written, and --resume -o FILE goes on from them"
)


@dataclass(slots=True)
class ChunkResult:
    """What one chunk made: its records as whole lines for each destination, and their tally."""

    number: int
    stdout: bytes  # the shown records, in the stdout format
    file: bytes  # every record, as JSON Lines (the -o file)
    records: int  # records as RecordWriter.written counts them
    tally: Tally
    interrupted: bool = False  # the run was stopped: the fetches cut off made no record
    log: str = ""  # -v: the chunk's steps, the lines one process writes to stderr


# Set in a worker process by its pool (_worker_start): the run asks its chunks to stop.
_stop: Event | None = None
# Whether this process's collector is tuned for fetching (runner.tune_gc: start-up frozen, the
# young generation collected seldom): a --workers worker's is at its start, a local:N Dask
# worker's at its first chunk. Only there does a chunk collect its cycles when it ends; in a
# process afetch does not own (a remote cluster's worker, a caller's executor) the collector is
# left as it is, and collects them itself. A full collection of a Dask worker's heap, never
# frozen, took about 150 ms a chunk: 12% of the workers' CPU in a 40 000-target run.
_tuned = False


def run_chunk(
    config: Config,
    lines: Sequence[str],
    *,
    number: int = 0,
    recorded: Recorded | None = None,
    stdout: bool = True,
    file: bool = False,
    loop: str = "auto",
    tune: bool = False,
) -> ChunkResult:
    """Fetch `lines` under `config` on an event loop of its own, and return their records:
    formatted for stdout (if `stdout`; filters applied) and for the -o file (if `file`).
    `recorded`: the chunk's share of --resume's records (Recorded.like and add). `tune`: the
    process is afetch's own (Pool.owned), its collector tuned as a worker's. Under -v, the
    steps of its fetches come back too (ChunkResult.log), as one process writes them."""
    from .runner import loop_factory, verbose_printer

    if tune:
        _tune_gc()
    records = _Records(config, stdout, file)
    log = io.StringIO() if config.output.verbose else None
    tracer = verbose_printer(log) if log is not None else None
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        interrupted = runner.run(_fetch(config, lines, recorded, records, tracer))
    # A chunk's event loop, backend and engine end in reference cycles, which the young-
    # generation threshold a run raises (runner.tune_gc) leaves for long: a worker grew about
    # 0.3 MB a chunk (30 MB to 49 MB in a minute). Collected here, it stays flat; the objects of
    # start-up are frozen, so this scans little more than the chunk's own garbage.
    if _tuned:
        gc.collect()
    return ChunkResult(
        number,
        b"".join(records.stdout),
        b"".join(records.file),
        records.count,
        records.tally,
        interrupted,
        log.getvalue() if log is not None else "",
    )


async def _fetch(
    config: Config,
    lines: Sequence[str],
    recorded: Recorded | None,
    sink: _Records,
    tracer: Tracer | None = None,
) -> bool:
    """Run the engine over the chunk; True if the run's stop cut it short."""
    async with Engine(config, recorded=recorded, tracer=tracer) as engine:
        run = asyncio.ensure_future(engine.run(_unpaused(lines), sink))
        while _stop is not None and not run.done():
            await asyncio.wait({run}, timeout=STOP_POLL_S)
            if _stop.is_set() and not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
                return True
        await run
    return False


async def _unpaused(lines: Sequence[str]) -> AsyncIterator[str]:
    """The chunk's lines as an async iterable: the engine yields to the loop once per line of a
    plain list (to let a long list be read while fetches run), which a chunk, already in
    memory, does not need. That pass per line cost about 60 us a request here (5 000 targets
    against nginx, -c 100: 265-290 us of CPU a request with it, 155-175 without)."""
    for line in lines:
        yield line


class _Records:
    """A worker's sink: what RecordWriter.write does, into memory, plus the tally."""

    def __init__(self, config: Config, stdout: bool, file: bool) -> None:
        self._shows = stdout_filter(config.output)
        self._encode = encoder(make_format(config.output).formatter if stdout else None, file)
        self.stdout: list[bytes] = []
        self.file: list[bytes] = []
        self.count = 0
        self.tally = Tally()

    def __call__(self, result: Result) -> None:
        shown = self._shows(result)
        self.tally.count(result, shown=shown)
        encoded = self._encode(result, shown)
        if encoded is None:
            return
        stdout, file = encoded
        if stdout:
            self.stdout.append(stdout)
        if file:
            self.file.append(file)
        self.count += 1


# -- where chunks run ----------------------------------------------------------------------------


class Pool(Protocol):
    """Where chunks run: `slots` of them at once."""

    slots: int
    loop: str  # the event loop a chunk runs on (--loop)
    stops_early: bool  # stop() makes running chunks hand back what they finished
    owned: bool  # its processes were started for this run: a chunk may tune them (run_chunk)
    # A chunk's size while the input lasts, in chunks of CHUNK_PER_CONCURRENCY: what a chunk
    # costs beyond its fetches (the handing out, the records' way back, the worker idling as
    # the chunk's last fetches drain) is paid that many times less often.
    chunk_factor: int

    def start(self) -> None:
        """Get the workers going, if they are this pool's to start (else nothing)."""

    def submit(self, fn: Callable[..., ChunkResult], /, *args: Any, **kwargs: Any) -> Any: ...

    def received(self, value: Any) -> ChunkResult:
        """The ChunkResult of what a future of submit() gave."""

    def failure(self, future: asyncio.Future[Any]) -> WorkersFailed | None:
        """What a chunk's future that is done says of the workers: they failed the run (the
        executor dropped the chunk, the workers running it kept dying), or None (it finished,
        or raised an error of afetch's or a cf.BrokenExecutor, for the caller)."""

    # How often, with chunks out and none coming back, check() is run (None: never).
    watch_s: float | None

    def check(self) -> None:
        """Raise WorkersFailed if the workers can no longer run a chunk (a cluster left with
        no worker), which no future of theirs would ever say."""

    def renew(self) -> None:
        """After a cf.BrokenExecutor: a working executor again, or raise the error."""

    def stop(self) -> None: ...

    def close(self) -> None: ...


class WorkerPool:
    """--workers N: a ProcessPoolExecutor of N processes. Spawned by default: a fresh
    interpreter each, which imports afetch itself (about 0.3 s of CPU). Or forked, for the
    command (open_pool), where start_method() allows: a copy of this process with afetch, the
    backend and the event loop imported, ready in milliseconds (one target through
    --workers 2, start to exit, 3 runs each: 0.30-0.40 s spawned, 0.17-0.23 s forked); a worker
    that replaces a dead one is spawned. Workers ignore SIGINT and SIGTERM: the parent, which
    owns the output, stops them (stop()) and takes what they did.

    A worker hands a chunk's records back in a file of the pool's own directory, and only the
    file's name through the executor's result pipe (_spilled): a worker killed part-way through
    writing a long message to that pipe leaves the executor's thread reading the rest of it for
    good (the pipe never ends, this process holds its other end), so the pool is never found
    broken and the run never ends. A name is one write of under PIPE_BUF (4 KB), which the
    kernel makes whole or not at all."""

    stops_early = True
    owned = True
    # 2: 40 000 targets through --workers 2 in 1.80-1.84 s instead of 1.86-1.91 (3 alternating
    # runs each, the bench's nginx).
    chunk_factor = 2

    def __init__(
        self,
        workers: int,
        loop: str = "auto",
        backend: str = "raw",
        *,
        method: str = "spawn",
        die_with_parent: bool = False,
    ) -> None:
        """`method`: "spawn", or "fork" where start_method() allows it when start() runs (else
        spawn; `method` then says which). `die_with_parent`: the kernel kills each
        worker if this process dies first (Linux), where every worker is started from the
        main thread, as the command's are (the kill comes when the starting thread ends).
        `backend`, `loop`: what the chunks run on, imported before a fork for its copies."""
        self.slots = workers
        self.loop = loop
        self.method = method
        self._backend = backend
        self._parent = os.getpid() if die_with_parent else None
        # Nothing is made before start(): a run that ends before it begins (a signal then ends
        # afetch at once) leaves no directory and no semaphore behind.
        self._begun = False
        self._executor: cf.ProcessPoolExecutor | None = None
        self._stops: list[Event] = []  # each executor's, which stop() sets
        # The processes the executor started, which it starts in submit(), in this thread.
        self._started: set[multiprocessing.process.BaseProcess] = set()
        self._spill: str | None = None
        self._spill_lock: int | None = None

    def start(self) -> None:
        """Start every worker now, not at the first chunk (run() calls this once its signal
        handling is in place, before its loop and the input's reader start threads): forked
        while this process has one thread; spawned ones import afetch meanwhile."""
        if self._begun:
            return
        self._begun = True
        spill = _spill_directory()
        if spill is not None:
            self._spill, self._spill_lock = spill
        if self.method == "fork":
            if start_method() == "fork":
                from .backends import backend_class
                from .runner import loop_factory

                backend_class(self._backend)
                loop_factory(self.loop)
            else:  # not on this platform, or this process has other threads: spawn
                self.method = "spawn"
        self._executor = self._new(self.method)
        for _ in range(self.slots):
            self._submit(_ready)

    def _new(self, method: str) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context(method)
        # The stop event of the executor's own context: a fork's semaphores are unlinked as
        # they are made, so an afetch that ends at once (a second Ctrl-C) leaves the resource
        # tracker nothing to warn of on stderr after it ("leaked semaphore objects").
        stop = context.Event()
        self._stops.append(stop)
        return cf.ProcessPoolExecutor(
            self.slots, context, initializer=_worker_start, initargs=(stop, self._parent)
        )

    def submit(self, fn: Callable[..., ChunkResult], /, *args: Any, **kwargs: Any) -> Any:
        self.start()
        return self._submit(_spilled, self._spill, fn, args, kwargs)

    def _submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        # The executor starts its processes in submit(): they are born with both signals
        # blocked, so a Ctrl-C to the whole terminal group cannot end one while it starts up,
        # before _worker_start ignores them. The parent gets any that came meanwhile after.
        assert self._executor is not None  # start() made it
        with _signals_blocked():
            starting = len(self._started) < self.slots
            before = multiprocessing.active_children() if starting else []
            future = self._executor.submit(fn, *args)
            if starting:
                self._started.update(set(multiprocessing.active_children()).difference(before))
            return future

    def received(self, value: Any) -> ChunkResult:
        if isinstance(value, ChunkResult):  # the worker could not write its file
            return value
        with open(value, "rb") as spilled:
            result: ChunkResult = pickle.load(spilled)
        os.unlink(value)
        return result

    watch_s: float | None = None  # a dead worker breaks the pool: its futures say so

    def failure(self, future: asyncio.Future[Any]) -> WorkersFailed | None:
        return None  # the pool only cancels a future of its own after a break

    def check(self) -> None:
        pass

    def renew(self) -> None:
        """A worker died. The broken executor sends its other workers SIGTERM, which they
        ignore, and waits for them to end, and the interpreter's exit waits on that executor's
        thread. Their chunks are sent again anyway: they are killed. (Files of chunks that
        came back to a broken pool go with the directory, in close().)"""
        assert self._executor is not None
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in self._started:
            if process.is_alive():
                process.kill()
        self._started.clear()
        # Spawned: this process has threads now (the executor's, the input's reader), and a
        # fork copies only the calling one, with any lock another held locked for good.
        self._executor = self._new("spawn")

    def stop(self) -> None:
        for stop in self._stops:
            stop.set()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
        if self._spill_lock is not None:
            os.close(self._spill_lock)
            self._spill_lock = None


# A pool's chunk directory: afetch-PID-XXXXXXXX in the temporary directory, PID its run's (for
# people; what says a directory is in use is its lock, below).
SPILL_PREFIX = "afetch-"
# A directory's lock may be missing for a moment after mkdtemp, before the pool takes it: a
# directory younger than this is never swept, whoever holds it.
SPILL_GRACE_S = 60.0


def _spill_directory() -> tuple[str, int | None] | None:
    """The pool's directory for its workers' chunks and the descriptor holding its lock (None
    where there are no locks, and no sweeps); None where no directory can be made (no room) or
    locked: then chunks come back through the pool itself. Sweeps what earlier runs left first."""
    try:
        root = tempfile.gettempdir()
        with contextlib.suppress(OSError):  # a directory left behind is no reason to go without
            _sweep_stale_spills(root)
        path = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=root)
    except OSError:
        return None
    try:
        return path, _lock(path)
    except OSError:  # no flock on this file system: a sweep could not tell this one is in use
        shutil.rmtree(path, ignore_errors=True)
        return None


def _lock(path: str) -> int | None:
    """An exclusive flock on directory `path`, held by the descriptor returned (closing it, or
    this process ending however it ends, lets go): how a sweep tells a live pool's directory
    from one left behind, across PID namespaces and reboots alike. None where there is no flock
    (not POSIX), and no sweep either; OSError where the file system refuses it."""
    try:
        import fcntl
    except ImportError:  # not on this platform
        return None
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


def _sweep_stale_spills(root: str, now: float | None = None) -> None:
    """Remove the chunk directories in `root` that this user's runs left without closing their
    pool (SIGKILLed, or the machine went down): named afetch-PID-..., older than SPILL_GRACE_S,
    and locked by nobody. One lstat per afetch-PID- entry of `root`, an open and a flock per one
    past its grace: 1.3 ms, once a pool, for a directory of 1 000 other entries and 10 held."""
    now = time.time() if now is None else now
    with os.scandir(root) as entries:
        for entry in entries:
            name = entry.name
            pid, dash, _ = name.removeprefix(SPILL_PREFIX).partition("-")
            if not (name.startswith(SPILL_PREFIX) and dash and pid.isascii() and pid.isdigit()):
                continue
            try:
                facts = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            if (
                not stat.S_ISDIR(facts.st_mode)
                or facts.st_uid != os.getuid()
                or now - facts.st_mtime < SPILL_GRACE_S
            ):
                continue
            try:
                held = _lock(entry.path)
            except OSError:
                continue  # held by a live pool (or not ours to open)
            if held is None:
                return  # no locks on this platform: no way to tell, so nothing is swept
            try:
                shutil.rmtree(entry.path, ignore_errors=True)
            finally:
                os.close(held)


def _spilled(
    directory: str | None,
    fn: Callable[..., ChunkResult],
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> str | ChunkResult:
    """In a worker: run the chunk, and return the name of a file of `directory` holding its
    ChunkResult (WorkerPool.received reads it); the result itself where that file cannot be
    written (a full disk, say), as before the pool had files."""
    result = fn(*args, **kwargs)
    if directory is None:
        return result
    try:
        descriptor, path = tempfile.mkstemp(prefix=f"chunk-{result.number}-", dir=directory)
    except OSError:
        return result
    try:
        with open(descriptor, "wb") as spilled:
            pickle.dump(result, spilled, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:
        os.unlink(path)
        return result
    return path


def start_method() -> str:
    """How --workers starts its processes: "fork" on Linux while this process has one thread
    (a fork copies the calling thread only: a lock another thread held would stay locked in
    the child for good, which is why Python 3.12 warns of it); "spawn" otherwise (on macOS
    a fork is unsafe whatever the threads, and Python spawns there by default too)."""
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork" if _threads() == 1 else "spawn"


def _threads() -> int:
    """This process's threads, all of them, not only Python's; 0 where that cannot be told."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _ready() -> None:
    """The call that starts a pool's workers: nothing."""


def _worker_start(stop: Event, parent: int | None = None) -> None:
    """A worker process's first call: the signals are the parent's to handle. A forked worker
    also lets go of the parent's signal wake-up descriptor (Python 3.12 does so itself), into
    which a signal here would write. `parent`: the pid to die with (WorkerPool's
    die_with_parent)."""
    global _stop
    _stop = stop
    if parent is not None:
        _die_with(parent)
    _tune_gc()
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


PR_SET_PDEATHSIG = 1  # prctl(2), <linux/prctl.h>


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this worker when its parent dies (Linux's PR_SET_PDEATHSIG), and
    end now if it died already. A worker's records reach the output only through the parent;
    one left behind (the parent SIGKILLed, or out on a second Ctrl-C) ignores SIGINT and
    SIGTERM and holds the parent's stdout, so a pipe's reader (`afetch ... | jq`) waited for an
    end that never came, and a forked one the -o file and the chunk directory's lock too."""
    if sys.platform == "linux":
        try:
            import ctypes

            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (ImportError, OSError, AttributeError):  # no ctypes, no libc to ask: go without
            pass
    if os.getppid() != parent:
        os._exit(1)


def _tune_gc() -> None:
    """What the parent does for one process (runner.tune_gc), once in this one: the same
    saving per request here."""
    global _tuned
    if not _tuned:
        from .runner import tune_gc

        tune_gc()
        _tuned = True


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):  # not on this platform
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class ExecutorPool:
    """Any concurrent.futures.Executor (Dask's among them) with `slots` chunks at once. A
    broken executor is not renewed: its error ends the run. `owned`: its processes are this
    run's own (a local:N cluster)."""

    stops_early = False
    chunk_factor = 1  # an executor of unknown costs: chunks as small as they spread best

    def __init__(
        self,
        executor: cf.Executor,
        slots: int,
        loop: str = "auto",
        on_close: Callable[[], None] | None = None,
        *,
        owned: bool = False,
    ) -> None:
        self.slots = max(1, slots)
        self.loop = loop
        self.owned = owned
        self._executor = executor
        self._on_close = on_close

    def start(self) -> None:
        pass  # running already: the executor's

    def submit(self, fn: Callable[..., ChunkResult], /, *args: Any, **kwargs: Any) -> Any:
        return self._executor.submit(fn, *args, **kwargs)

    def received(self, value: Any) -> ChunkResult:
        result: ChunkResult = value
        return result

    watch_s: float | None = None

    def failure(self, future: asyncio.Future[Any]) -> WorkersFailed | None:
        if future.cancelled():  # only the executor can have: this run cancels none it waits on
            return WorkersFailed(f"the executor dropped a chunk; {CHUNKS_BACK_WRITTEN}")
        return None

    def check(self) -> None:
        pass

    def renew(self) -> None:
        raise cf.BrokenExecutor("the executor broke")

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        if self._on_close is not None:
            self._on_close()


# How long a run's cluster may have no worker, with chunks waiting for one, before the run
# ends: a Nanny restarts its killed worker in a few seconds, a `dask worker` started by hand
# needs a few to import distributed.
DASK_NO_WORKER_S = 30.0


class DaskPool(ExecutorPool):
    """A distributed.Client's executor, with what its futures alone would not say: a run
    whose cluster is lost. The scheduler gone, Dask cancels every future, and a Client that
    gave up reconnecting refuses new ones (-> WorkersFailed); a chunk whose workers kept dying
    on it fails with KilledWorker (-> WorkersFailed); and a cluster left with no worker keeps
    its chunks waiting for one for good, so a thread asks the scheduler for a worker every
    `watch_s` and check() says when, with chunks out, there was none for `no_worker_s`."""

    # check() compares two clocks; the thread asks the scheduler once in this time (one RPC).
    watch_s: float | None = 1.0
    # A Dask task costs its scheduler and client about 8 ms (local:2: the client's event loop
    # alone held the GIL 343 ms over a 40-chunk run), ten times a forked worker's chunk; Dask
    # advises tasks of 100 ms or more. 4: 40 000 targets through local:2 in 2.47-2.53 s
    # instead of 2.78-2.84 (3 alternating runs each, the bench's nginx).
    chunk_factor = 4

    def __init__(
        self,
        client: Any,
        loop: str = "auto",
        on_close: Callable[[], None] | None = None,
        *,
        owned: bool = False,
        address: str = "the cluster",
        no_worker_s: float = DASK_NO_WORKER_S,
    ) -> None:
        slots = sum(client.nthreads().values())
        super().__init__(client.get_executor(pure=False), slots, loop, on_close, owned=owned)
        self.address = address
        self._client = client
        self._no_worker_s = no_worker_s
        self._killed: Any = importlib.import_module("distributed").KilledWorker  # untyped
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the chunks out change in Dask's thread too
        self._out = 0  # chunks submitted and not done
        self._seen = self._out_since = time.monotonic()  # a worker last seen; chunks out since

    def start(self) -> None:
        threading.Thread(target=self._watching, name="afetch-dask-watch", daemon=True).start()

    def _watching(self) -> None:
        """The watch thread: notes when the scheduler last had a running worker (an error
        asking counts as none: a scheduler gone cancels the futures first)."""
        while not self._stopping.wait(self.watch_s):
            try:
                self._client.wait_for_workers(1, timeout=self.watch_s)
            except BaseException:  # the CancelledError of a client closing meanwhile among them
                if self._stopping.is_set():
                    return
            else:
                self._seen = time.monotonic()

    def submit(self, fn: Callable[..., ChunkResult], /, *args: Any, **kwargs: Any) -> Any:
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except Exception:
            if self._client.status in ("closing", "closed"):  # it gave up on the scheduler
                raise self._scheduler_lost() from None
            raise
        with self._lock:
            if self._out == 0:
                self._out_since = time.monotonic()
            self._out += 1
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: cf.Future[Any]) -> None:
        with self._lock:
            self._out -= 1

    def _scheduler_lost(self) -> WorkersFailed:
        return WorkersFailed(
            f"--cluster {self.address}: the scheduler was lost (or cancelled this run's"
            f" chunks); {CHUNKS_BACK_WRITTEN}"
        )

    def failure(self, future: asyncio.Future[Any]) -> WorkersFailed | None:
        if future.cancelled():
            return self._scheduler_lost()
        exc = future.exception()
        if isinstance(exc, self._killed):  # the scheduler's distributed.scheduler.allowed-failures
            return WorkersFailed(
                f"--cluster {self.address}: {exc.allowed_failures + 1} workers died running one"
                f" chunk, the last {exc.last_worker.address} (out of memory? see its log);"
                f" {CHUNKS_BACK_WRITTEN}"
            )
        return None

    def check(self) -> None:
        with self._lock:
            waited = time.monotonic() - max(self._seen, self._out_since) if self._out else 0.0
        if waited >= self._no_worker_s:
            raise WorkersFailed(
                f"--cluster {self.address}: the scheduler has had no worker for"
                f" {self._no_worker_s:g} s with chunks to run: start some with"
                f" `dask worker {self.address}`; {CHUNKS_BACK_WRITTEN}"
            )

    def close(self) -> None:
        self._stopping.set()
        if self._client.status in ("closing", "closed"):  # it gave up on its scheduler:
            if self._on_close is not None:  # shutting the executor down would ask it, and raise
                self._on_close()
            return
        super().close()


# How long --cluster ADDRESS tries to reach the scheduler (Dask retries a refused connection
# until then): a remote scheduler just started, or across a slow link, gets there in time.
DASK_CONNECT_TIMEOUT = "10s"
# local:N's dashboard: a free loopback port. (None turns it off since distributed 2024.9 only;
# before, None is the default :8787, taken by any other cluster of the machine.)
DASHBOARD = "127.0.0.1:0"
# distributed's own log lines would mix into afetch's stderr: INFO on every worker start, and
# ERROR with a traceback when a run's scheduler is lost (the Client's reconnection, cancelled
# as the run closes it); afetch says what failed, in one line of its own. distributed gives
# two of its loggers levels of their own, which the first alone would not reach. Set as the
# environment's DASK_LOGGING, so local:N's workers have it too, unless the user set any
# DASK_LOGGING variable (DASK_LOGGING__DISTRIBUTED=info, say: set beside it, ours, read
# after it, would replace it).
DASK_LOGGING = {
    name: "critical" for name in ("distributed", "distributed.client", "distributed.gc")
}
# Dask configuration for local:N's servers (each Nanny hands its worker process the
# configuration in force when it was made): three timers that wake a worker's event loop,
# which then takes the GIL from the chunk it runs, for no use in a run. The statistical
# profiler samples the running chunk's stack every 10 ms (off: about 5% less CPU a request,
# --cluster local:2 on 40 000 targets, 573 -> 543 us); the tick measures the loop's lag every
# 20 ms, to warn of a loop blocked for 3 s (each 1 s: 550 -> 500 us); the memory monitor of
# each worker and of its Nanny (here, in afetch's process) reads the RSS every 100 ms (each
# 1 s, the limit still kept: 175 -> 165 us a request, 8 490 -> 8 890 req/s, medians of 4
# alternating runs on an idle machine).
LOCAL_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    # The workers fork from one server process that imported distributed once, instead of
    # each starting a new interpreter that imports it (about 0.45 s of CPU each) and tears it
    # down at the end (forked, a worker leaves with os._exit: 0.17 -> 0.02 s to close the
    # cluster). One target through local:2: 1.22-1.57 s -> 0.90-1.27 s. The server lives as
    # long as this process; Python 3.14 makes it the default on Linux.
    "distributed.worker.multiprocessing-method": "forkserver",
}


# What local:N's fork server imports before it forks a worker: distributed (and with it dask,
# tornado, msgpack, cloudpickle, toolz; Dask's own list adds numpy, pandas and lz4 where they
# are installed, which afetch's workers never use), and afetch's own engine and event loop,
# which each worker would otherwise import after it was forked, at its first chunk. A module
# that is not installed is skipped (multiprocessing ignores its ImportError).
FORKSERVER_PRELOAD = ["distributed", __name__, "uvloop"]


def _start_fork_server() -> None:
    """Start multiprocessing's fork server for local:N's workers now, before this process
    imports distributed, instead of when the cluster's first worker is asked for: the server's
    own start (an interpreter importing FORKSERVER_PRELOAD, about 0.3 s of CPU) runs on another
    core meanwhile. local:2 on one target, start to exit: 1.18-1.35 s -> 0.90-1.12 s (5 runs
    each).

    Ctrl-C is afetch's: the server is started with SIGINT ignored and both signals blocked,
    which an exec keeps, so it and every worker it forks ignore Ctrl-C as --workers' workers
    do (the Nanny stops its worker through a queue, then SIGKILL). (Python sets its own SIGINT
    handler at start-up only where SIGINT is not ignored; the server hands its children the
    handlers it began with.) Before, a Ctrl-C to the terminal's group raised KeyboardInterrupt
    in the server's imports and in each worker: tracebacks on stderr, and a server gone. The
    resource tracker starts first, on its own: the first start of it unblocks both signals in
    this thread, which would let a Ctrl-C meet the ignored SIGINT and be lost."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(FORKSERVER_PRELOAD)
    multiprocessing.resource_tracker.ensure_running()
    with _signals_blocked(), _sigint_ignored():
        multiprocessing.forkserver.ensure_running()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile, for the processes started; held inside _signals_blocked(), so
    a Ctrl-C that comes meanwhile stays pending for the handler put back. Not where that cannot
    hold: outside the main thread (the one that may set handlers), over a handler set outside
    Python (which could not be put back), or over a Ctrl-C already pending (ignoring it would
    discard it). Another thread that leaves SIGINT unblocked could still take one meanwhile,
    and lose it: afetch's command has no other thread yet when its cluster starts."""
    if (
        not hasattr(signal, "pthread_sigmask")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is None
        or signal.SIGINT in signal.sigpending()
    ):
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def open_dask(address: str, loop: str = "auto") -> DaskPool:
    """--cluster ADDRESS: a Client of that scheduler, or with local:N a LocalCluster of N
    single-threaded worker processes started here. Raises ConfigError when distributed is not
    installed or the scheduler cannot be reached."""
    if not any(name.startswith("DASK_LOGGING") for name in os.environ):  # the user's wins
        os.environ["DASK_LOGGING"] = repr(DASK_LOGGING)
    if address.startswith(LOCAL_CLUSTER) and importlib.util.find_spec("distributed"):
        _start_fork_server()
    try:
        # Typed as Any: distributed's API is untyped, and only a few calls of it are used.
        distributed: Any = importlib.import_module("distributed")
        dask_config: Any = importlib.import_module("dask.config")  # distributed requires dask
    except ImportError:
        raise ConfigError("--cluster needs Dask: pip install 'afetch[dask]'") from None
    cluster: Any = None
    failure: ConfigError | None = None
    try:
        if address.startswith(LOCAL_CLUSTER):
            workers = int(address[len(LOCAL_CLUSTER) :])
            # Blocked signals: the cluster's threads, and any process they start, begin with
            # both blocked (a fork server Dask starts again, say): Ctrl-C is afetch's.
            with _signals_blocked(), dask_config.set(LOCAL_WORKER_CONFIG):
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, dashboard_address=DASHBOARD
                )
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        # ValueError: Dask could not parse the address ("missing port number ...").
        problem = (
            "not a scheduler address (tcp://HOST:PORT or local:N)"
            if isinstance(exc, ValueError)
            else "cannot reach the scheduler"
        )
        failure = ConfigError(f"--cluster {address}: {problem}: {exc}")
    if failure is not None:
        # The Client that could not start is left in a reference cycle with its event loop's
        # thread still running. Collected later, its __del__ closes it from wherever that
        # collection happens: inside the next Client's start, both wait on one lock of Dask's
        # and the process hangs for good (distributed 2026.8, a second open_dask in one
        # process). Collected here, it is closed now and its thread ends.
        gc.collect()
        raise failure

    def close() -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    if cluster is None:  # a cluster of someone else's making: can its workers run afetch?
        try:
            check_workers(client, address)
        except BaseException:
            close()
            raise
    return dask_pool(client, loop, close, owned=cluster is not None, address=address)


# How long --cluster ADDRESS waits for the scheduler's first worker: one being started along
# with the scheduler (a `dask worker` importing distributed takes a few seconds) gets there.
DASK_FIRST_WORKER_S = 30.0


def check_workers(client: Any, address: str, wait_s: float = DASK_FIRST_WORKER_S) -> None:
    """Raise WorkersFailed unless the cluster has a worker (within `wait_s`) and each of them
    imports this afetch. A worker without afetch cannot even read a chunk's task: Dask's worker
    then ends, the chunk waits for another, and the run waited for good (Dask 2026.8). Asked
    with a function of the standard library (pkgutil.resolve_name), which any worker can
    unpickle: one of afetch's would fail the same way."""
    try:
        client.wait_for_workers(1, timeout=wait_s)
        versions = client.run(
            pkgutil.resolve_name, "fetcher.version:__version__", on_error="return"
        )
    except TimeoutError:  # Dask's WorkerStartTimeoutError
        raise WorkersFailed(
            f"--cluster {address}: the scheduler has no worker (waited {wait_s:g} s):"
            f" start some with `dask worker {address}`"
        ) from None
    except OSError as exc:  # the scheduler gone meanwhile: Dask's comm errors are OSErrors
        raise WorkersFailed(f"--cluster {address}: the scheduler was lost: {exc}") from None
    problems = []
    for worker, version in sorted(versions.items()):
        if isinstance(version, BaseException):
            problems.append(f"{worker} cannot import afetch ({type(version).__name__}: {version})")
        elif version != __version__:
            problems.append(f"{worker} has afetch {version}")
    if problems:
        raise WorkersFailed(
            f"--cluster {address}: {'; '.join(problems)}; this is afetch {__version__}:"
            " install the same afetch on every worker"
        )


def dask_pool(
    client: Any,
    loop: str = "auto",
    on_close: Callable[[], None] | None = None,
    *,
    owned: bool = False,
    address: str = "the cluster",
    no_worker_s: float = DASK_NO_WORKER_S,
) -> DaskPool:
    """A pool of a connected distributed.Client: a slot per worker thread. Each chunk's
    future is the executor's; Dask's own is released once the result reached this process,
    so a worker dying later never makes Dask compute a written chunk again. `owned`: the
    cluster's workers were started for this run (local:N)."""
    return DaskPool(client, loop, on_close, owned=owned, address=address, no_worker_s=no_worker_s)


def open_pool(fanout: Fanout, loop: str = "auto", backend: str = "raw") -> Pool | None:
    """The pool a run's Fanout asks for, its chunks to run on `backend`; None: fetch in this
    process."""
    if fanout.cluster:
        return open_dask(fanout.cluster, loop)
    if fanout.workers:
        return WorkerPool(fanout.workers, loop, backend, method="fork", die_with_parent=True)
    return None


# -- the parent: one reader, one writer ---------------------------------------------------------


def host_hash(line: str, scheme: str = "http") -> int:
    """A stable 64-bit hash of the host a line names (of the line itself if it names none):
    the same on every machine and Python, so --shard K/N splits an input the same way
    wherever it runs, and every target of a host falls in the same share."""
    try:
        key = parse_target(line, "https" if scheme == "auto" else scheme).host.lower()
    except InvalidInput:
        key = line.strip()
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def in_shard(line: str, shard: tuple[int, int], scheme: str = "http") -> bool:
    k, n = shard
    return host_hash(line, scheme) % n == k - 1


def lane_of(line: str, lanes: int, scheme: str = "http") -> int:
    """The lane of a line's host under --per-host: by the hash's high half, since --shard takes
    its share by the whole hash modulo N, and lanes by the same residues would put a whole
    shard in one lane."""
    return (host_hash(line, scheme) >> 32) % lanes


async def shard_lines(lines: Lines, shard: tuple[int, int], scheme: str) -> AsyncIterator[str]:
    """The lines of shard K of N: those whose host hashes to K. N runs, one per K, on any
    machines, fetch every line of the input exactly once between them."""
    async for line in aiter_lines(lines):
        if not is_skipped(line) and in_shard(line, shard, scheme):
            yield line


@dataclass(frozen=True, slots=True)
class Plan:
    """How a run is cut up for a pool of `slots`: what each chunk may do, and how many are out."""

    config: Config  # each chunk's: its share of --concurrency and --rate
    chunk_targets: int  # the smallest chunk (but the input's last), and each under --per-host
    in_flight: int
    lanes: int  # > 1: --per-host; a host's lines go to one lane, one chunk of it out at once
    steady_targets: int  # a chunk while the input lasts, and the largest (>= chunk_targets)
    lookahead: int  # targets read ahead of the chunks out

    @classmethod
    def of(cls, config: Config, slots: int, factor: int = 1) -> Plan:
        """`factor`: the pool's chunk_factor."""
        limits = config.limits
        concurrency = max(1, math.ceil(limits.concurrency / slots))
        exclusive = limits.per_host > 0
        in_flight = slots if exclusive or limits.rate else slots * IN_FLIGHT_PER_SLOT
        # The chunks out share the rate, so their starts together never exceed it.
        rate = limits.rate / in_flight if limits.rate else 0.0
        chunk = min(MAX_CHUNK, max(MIN_CHUNK, CHUNK_PER_CONCURRENCY * concurrency))
        chunk_config = replace(config, limits=replace(limits, concurrency=concurrency, rate=rate))
        if exclusive:  # a lane's chunks stay small: a host's targets are few
            return cls(chunk_config, chunk, in_flight, slots, chunk, 0)
        steady = max(chunk, min(MAX_CHUNK, chunk * factor))
        lookahead = min(MAX_LOOKAHEAD, steady * slots * LOOKAHEAD_PER_SLOT)
        return cls(chunk_config, chunk, in_flight, 1, steady, lookahead)


@dataclass(slots=True)
class _Chunk:
    number: int
    lane: int
    lines: list[str] = field(default_factory=list)
    targets: int = 0
    recorded: Recorded | None = None


class _Carving(Recorded):
    """--resume for one chunk: take() answers from the run's Recorded and notes each yes in
    the chunk's own, which the worker gets instead of the whole file's records."""

    def __init__(self, whole: Recorded) -> None:
        part = whole.like()
        super().__init__(part._lines, part._ports)
        self._whole = whole

    def take(self, line: str, port: int | None = None) -> bool:
        if not self._whole.take(line, port):
            return False
        self.add(line, port)
        return True

    def part(self) -> Recorded:
        return Recorded(self._lines, self._ports)


class FanOut:
    """Reads the lines, gives chunks to `pool`, writes each chunk's records through `writer`
    once the whole chunk is back, and merges its tally into `tally`."""

    def __init__(
        self,
        config: Config,
        pool: Pool,
        writer: RecordWriter,
        tally: Tally,
        *,
        recorded: Recorded | None = None,
        on_chunk: Callable[[], None] | None = None,
        log: TextIO | None = None,
    ) -> None:
        """`log`: where a chunk's -v lines go (stderr), just before its records."""
        self.plan = Plan.of(config, pool.slots, pool.chunk_factor)
        self._scheme = config.bare_scheme
        self._ordered = config.order == "input"
        self._pool = pool
        self._writer = writer
        self._tally = tally
        self._recorded = recorded
        self._on_chunk = on_chunk
        self._log = log
        self._counter = Jobs(config) if config.ports else None
        self._stdout, self._file = writer.destinations
        self._pending: dict[asyncio.Future[ChunkResult], _Chunk] = {}
        self._busy: set[int] = set()  # lanes with a chunk out
        self._held: dict[int, ChunkResult] = {}  # --order input: back before their turn
        self._next = 0  # the chunk number written next, under --order input
        self._numbers = 0
        self._running = 0  # chunks sent and not done (done ones may wait to be collected)
        self._breaks = 0  # pool breaks since a chunk last came back

    async def run(self, lines: Lines) -> None:
        """Fetch every line; on cancellation, write what the workers finished (all of it, or
        with a pool that cannot stop early, nothing more) and re-raise."""
        try:
            await self._run(lines)
        except asyncio.CancelledError:
            await self._interrupted()
            raise
        except WorkersFailed:
            self._write_held()  # --order input: what came back early is not lost
            raise
        finally:
            if self._pending:  # a failed write, say: the running chunks need not finish
                self._pool.stop()
            for future in self._pending:
                future.cancel()

    async def _run(self, lines: Lines) -> None:
        if self.plan.lanes > 1:
            await self._by_lane(lines)
        else:
            await self._windowed(lines)
        while self._pending:
            await self._collect()

    async def _by_lane(self, lines: Lines) -> None:
        """--per-host: each host's lines go to its lane's chunk, sent when full."""
        plan = self.plan
        building = [self._new_chunk(lane) for lane in range(plan.lanes)]
        async for line in aiter_lines(lines):
            if is_skipped(line):
                continue
            chunk = building[lane_of(line, plan.lanes, self._scheme)]
            self._add(chunk, line, self._count(line))
            if chunk.targets >= plan.chunk_targets:
                await self._submit(chunk)
                building[chunk.lane] = self._new_chunk(chunk.lane)
        for chunk in building:
            if chunk.lines:
                await self._submit(chunk)

    async def _windowed(self, lines: Lines) -> None:
        """Chunks of plan.steady_targets, cut from the front of a window of the input read
        plan.lookahead targets ahead. While a slot has no chunk (as the run starts, or an input
        that comes slowly), what the window holds goes out as soon as it is plan.chunk_targets,
        so no worker waits for the window to fill (10 000 targets through --workers 2: 0.56-0.60
        s with the wait, 0.54-0.58 s before the window; a stream of 500 lines a second sent
        nothing for 6 s). When the input ends, what it holds goes out in
        chunks that shrink as it empties (each a share of what is left for every chunk out,
        down to plan.chunk_targets): a worker given a large chunk last would run on alone
        while the others idle, which took the gain of larger chunks on short inputs (10 000
        targets through local:2 with chunks 4 times as large: 1.06-1.08 s, not 1.02-1.08)."""
        plan = self.plan
        window: collections.deque[tuple[str, int]] = collections.deque()
        held = 0
        async for line in aiter_lines(lines):
            if is_skipped(line):
                continue
            targets = self._count(line)
            window.append((line, targets))
            held += targets
            if held >= plan.steady_targets + plan.lookahead:
                held -= await self._cut(window, plan.steady_targets)
            elif held >= plan.chunk_targets and self._running < plan.in_flight:
                held -= await self._cut(window, plan.steady_targets)  # a slot idles: no waiting
        while window:
            share = math.ceil(held / plan.in_flight)
            held -= await self._cut(
                window, min(plan.steady_targets, max(plan.chunk_targets, share))
            )

    async def _cut(self, window: collections.deque[tuple[str, int]], size: int) -> int:
        """Send a chunk of the window's first lines, `size` targets or the last of them; how
        many targets it took."""
        chunk = self._new_chunk(0)
        while window and (chunk.targets < size or not chunk.lines):
            self._add(chunk, *window.popleft())
        await self._submit(chunk)
        return chunk.targets

    def _count(self, line: str) -> int:
        return self._counter.count(line) if self._counter is not None else 1

    def _new_chunk(self, lane: int) -> _Chunk:
        chunk = _Chunk(self._numbers, lane)
        self._numbers += 1
        return chunk

    def _add(self, chunk: _Chunk, line: str, targets: int) -> None:
        chunk.lines.append(line)
        chunk.targets += targets
        if self._recorded is not None:
            carving = _Carving(self._recorded) if chunk.recorded is None else chunk.recorded
            assert isinstance(carving, _Carving)
            for _ in Jobs(self.plan.config, carving).of(line):
                pass  # only what take() moves into the chunk's share matters here
            chunk.recorded = carving

    async def _submit(self, chunk: _Chunk) -> None:
        exclusive = self.plan.lanes > 1
        while len(self._pending) >= self.plan.in_flight or (exclusive and chunk.lane in self._busy):
            await self._collect()
        self._send(chunk)

    def _send(self, chunk: _Chunk) -> None:
        recorded = chunk.recorded.part() if isinstance(chunk.recorded, _Carving) else None
        try:
            future = self._pool.submit(
                run_chunk,
                self.plan.config,
                chunk.lines,
                number=chunk.number,
                recorded=recorded,
                stdout=self._stdout,
                file=self._file,
                loop=self._pool.loop,
                tune=self._pool.owned,
            )
        except cf.BrokenExecutor:  # a worker died since a chunk last came back
            self._broken(chunk)
            return
        waiting = asyncio.wrap_future(future)
        self._running += 1
        waiting.add_done_callback(self._ran)
        self._pending[waiting] = chunk
        self._busy.add(chunk.lane)

    def _ran(self, _: asyncio.Future[Any]) -> None:
        self._running -= 1

    async def _collect(self) -> None:
        """Wait for at least one chunk out to come back, and write what can be written."""
        watch = self._pool.watch_s
        while True:
            done, _ = await asyncio.wait(
                set(self._pending), timeout=watch, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                break
            self._pool.check()  # nothing back for `watch` s: have the workers gone?
        failed: WorkersFailed | None = None  # raised once the chunks back with it are taken
        for future in done:
            chunk = self._pending.pop(future, None)
            if chunk is None:
                continue  # a chunk of a broken pool, sent again already
            if (failure := self._pool.failure(future)) is not None:
                failed = failed or failure
                continue
            try:
                result = self._pool.received(future.result())
            except cf.BrokenExecutor:
                self._broken(chunk)
                continue
            self._breaks = 0
            self._busy.discard(chunk.lane)
            self._done(result)
        if failed is not None:
            raise failed

    def _broken(self, chunk: _Chunk) -> None:
        """A worker died: every chunk out is lost with its pool, none of it written. A new
        pool gets them all again."""
        self._breaks += 1
        if self._breaks > MAX_BREAKS:
            raise WorkersFailed(
                f"worker processes died {self._breaks} times in a row, with no chunk back in"
                f" between (out of memory? see dmesg); {CHUNKS_BACK_WRITTEN}"
            )
        lost = [chunk, *self._pending.values()]
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.renew()
        for again in sorted(lost, key=lambda c: c.number):
            self._send(again)

    def _done(self, result: ChunkResult) -> None:
        self._tally.merge(result.tally)
        if not self._ordered:
            self._write(result)
        else:
            self._held[result.number] = result
            while self._next in self._held:
                self._write(self._held.pop(self._next))
                self._next += 1
        if self._on_chunk is not None:
            self._on_chunk()

    def _write(self, result: ChunkResult) -> None:
        if result.log and self._log is not None:
            # A stderr gone (its reader left): the steps are lost, not the records after them.
            with contextlib.suppress(OSError, ValueError):
                self._log.write(result.log)
        self._writer.write_formatted(result.stdout, result.file, result.records)

    async def _interrupted(self) -> None:
        """Stopped: a pool that can stop early hands back each running chunk's finished
        records (within STOP_WAIT_S); they are written, held ones in order, gaps skipped (the
        fetches cut off were never reported, so --resume fetches them)."""
        if self._pool.stops_early and self._pending:
            self._pool.stop()
            end = time.monotonic() + STOP_WAIT_S
            while self._pending and (left := end - time.monotonic()) > 0:
                done, _ = await asyncio.wait(set(self._pending), timeout=left)
                if not done:
                    break
                for future in done:
                    self._pending.pop(future)
                    if not future.cancelled() and future.exception() is None:
                        result = self._pool.received(future.result())
                        self._tally.merge(result.tally)
                        self._held[result.number] = result
        self._write_held()

    def _write_held(self) -> None:
        """Write the chunks held for their turn, in order, over the gaps of those not back."""
        for number in sorted(self._held):
            self._write(self._held.pop(number))


class WorkersFailed(Exception):
    """The workers failed the run, not afetch and not a target: --workers processes kept dying
    (killed, out of memory), or a Dask cluster has no worker that can run afetch's chunks.
    One line on stderr and exit 69 (sysexits' EX_UNAVAILABLE); the records of the chunks that
    came back are written, each once, as with any stopped run."""
