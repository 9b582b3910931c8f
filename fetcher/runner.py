"""One CLI run: its inputs, the event loop, signals, the writer's whole lifetime (the -o file
repaired, opened and closed here), filtering, progress and the summary on stderr, and the exit
code it ends in."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from . import extras
from . import resume as resuming
from .config import STDOUT, Config, ConfigError, Fanout, Run
from .engine import Engine, Lines
from .inputs import STDIN, InputError, count_targets, read_lines
from .jobs import Jobs
from .models import Result
from .output import (
    Console,
    OutputClosed,
    OutputError,
    RecordWriter,
    escape,
    make_format,
    stdout_filter,
)
from .policy import Tracer
from .process import SIGNALS
from .resume import Recorded
from .stats import Tally
from .status import ExitCode
from .targets import Target

if TYPE_CHECKING:
    from .progress import ProgressLine
    from .scale import Pool, WorkersFailed

Counter = Callable[[], int | None]


@dataclass(slots=True)
class Outcome:
    """What a run did: the tally of its results, and how it ended."""

    tally: Tally = field(default_factory=Tally)
    signal: int | None = None
    output_closed: bool = False
    output_error: OutputError | InputError | None = None  # stops the run: exit 74
    workers_error: WorkersFailed | None = None  # --workers, --cluster: they failed, exit 69
    total: int | None = None  # targets in the input, once counted

    @property
    def ok(self) -> int:
        return self.tally.ok

    @property
    def failed(self) -> int:
        return self.tally.failed


def exit_code(outcome: Outcome) -> ExitCode:
    """The exit status for a finished run: an output error wins (records were lost), or an
    input that could not be read (targets were lost), then workers that failed the run (its
    targets were not all fetched), then a signal, then any failed target."""
    if outcome.output_error is not None:
        return ExitCode.OUTPUT
    if outcome.workers_error is not None:
        return ExitCode.UNAVAILABLE
    if outcome.signal == signal.SIGINT:
        return ExitCode.INTERRUPTED
    if outcome.signal == signal.SIGTERM:
        return ExitCode.TERMINATED
    return ExitCode.FAILURES if outcome.failed else ExitCode.OK


# Allocations between young-generation collections (CPython's default is 700). Cycles are rare
# in a run (an exception's traceback), so this costs little memory and saves much scanning.
GC_YOUNG_THRESHOLD = 50_000
# File descriptors kept back from --concurrency: stdio, the output file, the event loop's own,
# resolver threads, TLS state. One connection needs one descriptor.
FD_RESERVE = 64
# How long an interrupted run may spend counting its input for the "targets not fetched" of its
# last line (the progress line may have counted it already). Counting 2 million lines (47 MB)
# took 0.93 s here, so inputs up to about a million lines are counted; larger ones go unsaid.
SUMMARY_COUNT_SECONDS = 0.5


def fit_concurrency(requested: int) -> tuple[int, str | None]:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows; if `requested` still does
    not fit, return the concurrency that does and a one-line warning, so a run never fails with
    EMFILE halfway through."""
    try:
        import resource
    except ImportError:  # not on this platform: nothing to adjust
        return requested, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return requested, None
    fitted = max(1, soft - FD_RESERVE)
    return fitted, (
        f"concurrency lowered from {requested} to {fitted}: the open-file limit is {soft} "
        f"(raise it with ulimit -n)"
    )


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run on: uvloop when installed (auto) or asked for, else asyncio's.
    Raises ConfigError when uvloop is asked for and missing."""
    if name == "asyncio":
        return None
    uvloop = extras.UVLOOP.require() if name == "uvloop" else extras.UVLOOP.load()
    if uvloop is None:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@dataclass(slots=True)
class Prepared:
    """A command-line run with everything opened, ready to `run()`."""

    config: Config
    lines: Lines
    writer: RecordWriter
    factory: Callable[[], asyncio.AbstractEventLoop] | None
    console: Console
    count: Counter
    recorded: Recorded | None
    pool: Pool | None = None  # --workers, --cluster: where the lines are fetched

    def run(self) -> Outcome:
        return run(
            self.config,
            self.lines,
            self.writer,
            self.factory,
            console=self.console,
            count=self.count,
            recorded=self.recorded,
            pool=self.pool,
        )


def prepare(
    config: Config, files: Run, targets: Sequence[str], fanout: Fanout | None = None
) -> Prepared:
    """Everything a command-line run needs before its first fetch: the concurrency the
    open-file limit allows, the event loop, the inputs, and the writer, with the -o file
    repaired (--append, --resume), read (--resume) and opened; last, with `fanout`, the
    worker pool or Dask cluster. Raises ConfigError (a usage error) for what cannot be obeyed;
    nothing is fetched or written before then."""
    fanout = fanout or Fanout()
    fanout.check(config)
    concurrency, warning = fit_concurrency(config.limits.concurrency)
    if warning:
        if not config.output.silent:
            sys.stderr.write(f"afetch: warning: {warning}\n")
        limits = dataclasses.replace(config.limits, concurrency=concurrency)
        config = dataclasses.replace(config, limits=limits)
    factory = loop_factory(files.loop)
    console = Console.detect()
    lists = files.lists
    if not targets and not lists:
        if sys.stdin is None or console.stdin_tty:
            raise ConfigError("no targets: give them as arguments, with -l FILE, or on stdin")
        lists = (STDIN,)
    output = files.output
    if output == STDOUT:  # the JSON Lines records on stdout: what --json writes there already
        if config.output.format != "jsonl":
            raise ConfigError(
                f"-o - writes JSON Lines to stdout, which shows --format {config.output.format}:"
                " use --json, or -o FILE"
            )
        output = None
    if output and os.path.exists(output):
        for path in lists:
            if path != STDIN and os.path.samefile(path, output):
                raise ConfigError(f"-o {output} is also read with -l: use another file")
    chosen = make_format(config.output, colour=console.colour)
    recorded = None
    try:
        if output and (files.append or files.resume):
            resuming.repair(output)  # a torn line left by a killed run
            if files.resume:
                recorded = resuming.Recorded.load(output, by_port=bool(config.ports))
        writer = RecordWriter(
            chosen,
            stdout=sys.stdout.buffer,
            file_path=output,
            line_buffered=console.stdout_tty,
            append=files.append or files.resume,  # else a new file, as curl -o does
        )
    except OSError as exc:
        raise ConfigError(f"cannot use {output}: {exc.strerror}") from None
    lines: Lines = read_lines(targets, lists)
    expand = Jobs(config).count
    shard = fanout.shard
    if shard is not None:
        from .scale import in_shard, shard_lines

        lines = shard_lines(lines, shard, config.bare_scheme)
        whole = expand

        def expand(line: str) -> int:  # the progress line counts this shard's targets only
            return whole(line) if in_shard(line, shard, config.bare_scheme) else 0

    count = functools.partial(count_targets, targets, lists, expand)
    pool = None
    if fanout.parallel:  # last: a cluster started here is closed by the run, however it ends
        from .scale import WorkersFailed, open_pool

        try:
            pool = open_pool(fanout, files.loop, config.backend)
        except (ConfigError, WorkersFailed):
            writer.close()
            raise
    return Prepared(config, lines, writer, factory, console, count, recorded, pool)


def run(
    config: Config,
    lines: Lines,
    writer: RecordWriter,
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    *,
    console: Console | None = None,
    count: Counter | None = None,
    recorded: Recorded | None = None,
    pool: Pool | None = None,
) -> Outcome:
    """Run the engine over `lines` to completion or interruption; the writer is always flushed
    and closed. Ctrl-C and SIGTERM stop the run gracefully; a second one exits at once (see
    process.py for every moment of the process).

    With a terminal on stderr (and not --quiet) a progress line shows how far the run is;
    `count()`, if given, says how many targets there are, for its ETA; `recorded` (--resume)
    holds the targets an earlier run recorded, which are skipped. --stats prints the summary
    on stderr at the end, however the run ended. With a `pool` (--workers, --cluster) the
    lines are fetched there in chunks (scale.py), and this process reads and writes; the pool
    is closed at the end.
    """
    outcome = Outcome()
    console = console or Console(stdin_tty=False, stdout_tty=False, stderr_tty=False)
    tune_gc()
    with _signals_for_the_run():
        try:
            if pool is not None:
                # Here, not when the pool was made: a signal that comes while the workers
                # start is noted like any other, and the pool closed below (made by prepare(),
                # before a signal stopped a run, they outlived an afetch ended at once).
                pool.start()
            # SIGINT is ours, not Python's default: the Runner leaves it alone, so no
            # KeyboardInterrupt is ever raised, in the loop or anywhere else.
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(_main(config, lines, writer, outcome, console, count, recorded, pool))
        finally:
            if pool is not None:
                pool.close()
            try:
                writer.close()
            except OutputClosed:
                outcome.output_closed = True
            except OutputError as exc:
                outcome.output_error = outcome.output_error or exc
        outcome.signal = SIGNALS.received  # also one that came after the loop ended
        if outcome.output_closed:
            _silence_stdout()
        if config.output.stats:
            sys.stderr.write(outcome.tally.summary())
        if recorded is not None and not config.output.silent:
            sys.stderr.write(
                f"afetch: resume: {_plural(recorded.skipped, 'target')} skipped, already recorded"
                f" in {writer.file_name}\n"
            )
        if outcome.output_error is not None:
            sys.stderr.write(f"afetch: error: {outcome.output_error}\n")
        elif outcome.workers_error is not None:
            sys.stderr.write(f"afetch: error: {outcome.workers_error}\n")
        elif outcome.signal is not None:
            sys.stderr.write(_interrupted(outcome, writer, count, recorded))
        sys.stderr.flush()
    return outcome


@contextlib.contextmanager
def _signals_for_the_run() -> Iterator[None]:
    """From here on the first SIGINT or SIGTERM is noted (and stops the loop, while one runs)
    rather than ending the process. Without process.main in front (CliRunner, a library
    caller) our handlers are installed for the run only."""
    replaced = SIGNALS.install()
    SIGNALS.received = None
    SIGNALS.run_begun = True
    try:
        yield
    finally:
        SIGNALS.restore(replaced)


def _interrupted(
    outcome: Outcome, writer: RecordWriter, count: Counter | None, recorded: Recorded | None
) -> str:
    """The last line of an interrupted run: what was written, what was left, how to go on."""
    parts = [_plural(writer.written, "record") + " written"]
    total = outcome.total
    if total is None and count is not None:
        total = _count_within(count, SUMMARY_COUNT_SECONDS)
    if total is not None:
        skipped = recorded.skipped if recorded is not None else 0
        left = max(0, total - outcome.tally.done - skipped)
        parts.append(_plural(left, "target") + " not fetched")
    line = "afetch: interrupted: " + ", ".join(parts)
    if writer.file_name is not None:
        line += "; run again with --resume to continue"
    return line + "\n"


def _count_within(count: Counter, seconds: float) -> int | None:
    """count(), or None if it fails or takes longer than `seconds` (its daemon thread is then
    left to die with the process)."""
    box: list[int | None] = []

    def counting() -> None:
        box.append(_counted(count))

    thread = threading.Thread(target=counting, name="afetch-count", daemon=True)
    thread.start()
    thread.join(seconds)
    return box[0] if box else None


def _counted(count: Counter) -> int | None:
    """count(), or None where an input file is gone since the run started (a thread's
    exception would print its traceback)."""
    try:
        return count()
    except OSError:
        return None


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


async def _main(
    config: Config,
    lines: Lines,
    writer: RecordWriter,
    outcome: Outcome,
    console: Console,
    count: Counter | None,
    recorded: Recorded | None,
    pool: Pool | None,
) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def stop(signum: int) -> None:  # in the signal handler: cancel from the loop, not here
        loop.call_soon_threadsafe(main.cancel)

    shows = stdout_filter(config.output)
    tally = outcome.tally
    progress = _start_progress(config, outcome, writer, console, count)

    def sink(result: Result) -> None:
        shown = shows(result)
        tally.count(result, shown=shown)
        writer.write(result, shown=shown)  # the -o file gets it even when hidden
        if progress is not None:
            progress.update()

    SIGNALS.stop = stop  # only while this loop is open: the finally clause takes it back
    try:
        if SIGNALS.received is not None:  # it came while the loop was starting
            stop(SIGNALS.received)
        if pool is not None:
            from .scale import FanOut, WorkersFailed

            update = progress.update if progress is not None else None
            fan = FanOut(
                config, pool, writer, tally, recorded=recorded, on_chunk=update, log=sys.stderr
            )
            try:
                await fan.run(lines)
            except WorkersFailed as exc:
                outcome.workers_error = exc
        else:
            tracer = verbose_printer(sys.stderr) if config.output.verbose else None
            async with Engine(config, recorded=recorded, tracer=tracer) as engine:
                await engine.run(lines, sink)
    except OutputClosed:
        outcome.output_closed = True
    except (OutputError, InputError) as exc:
        outcome.output_error = exc
    except asyncio.CancelledError:
        if SIGNALS.received is None:
            raise  # not our stop: nobody else cancels the run, so a bug
    finally:
        SIGNALS.stop = None
        if progress is not None:
            progress.stop()


def verbose_printer(stream: TextIO) -> Tracer:
    """-v: each step as one line on stderr, prefixed by the request's URL (so lines of
    concurrent fetches can be told apart, and grepped); server bytes escaped."""

    def tell(target: Target, text: str) -> None:
        # A stderr gone (its reader left): the steps are lost, not the fetch. The write's error
        # made every target's record an internal error instead.
        with contextlib.suppress(OSError, ValueError):
            stream.write(f"{escape(target.url)} {escape(text)}\n")

    return tell


def _start_progress(
    config: Config,
    outcome: Outcome,
    writer: RecordWriter,
    console: Console,
    count: Counter | None,
) -> ProgressLine | None:
    """The progress line, on a terminal only; its total is counted on a daemon thread (a
    thread nobody waits for: a long count never delays the end of a short run). None with -v,
    whose lines it would be redrawn over."""
    output = config.output
    if not (output.progress and console.stderr_tty) or output.silent or output.verbose:
        return None
    from .progress import ProgressLine

    progress = ProgressLine(sys.stderr, outcome.tally)
    if console.stdout_tty:
        writer.before_stdout(progress.clear)
    progress.start()
    if count is not None:
        loop = asyncio.get_running_loop()

        def counting() -> None:
            total = outcome.total = _counted(count)
            if total is not None:
                with contextlib.suppress(RuntimeError):  # the run, and its loop, ended first
                    loop.call_soon_threadsafe(progress.set_total, total)

        threading.Thread(target=counting, name="afetch-count", daemon=True).start()
    return progress


def tune_gc() -> None:
    """A run allocates a few dozen short-lived objects per target, nearly all freed by reference
    counting. Moving the objects of start-up out of the collector's sight and collecting the
    young generation less often saved about 8% of a loopback run's time (see bench/)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _silence_stdout() -> None:
    """After the reader of stdout left, point fd 1 at /dev/null so the interpreter's own final
    flush does not complain about the broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
