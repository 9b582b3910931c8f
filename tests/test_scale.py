"""Fan-out (scale.py): chunks on worker processes and on Dask give the records one process
gives, exactly once, whatever happens to a worker; --shard splits an input exactly once;
--per-host and --rate hold across workers."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import csv
import ctypes
import io
import json
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from fetcher import runner, scale
from fetcher.cli import afetch
from fetcher.config import (
    Config,
    ConfigError,
    Fanout,
    Output,
    Request,
    StatusSet,
    parse_shard,
    parse_workers,
)
from fetcher.loopback import LoopbackHosts, delayed, read_request, replies, response
from fetcher.output import Format, RecordWriter, format_jsonl, make_format
from fetcher.resume import Recorded
from fetcher.stats import Reservoir, Tally
from tests.conftest import make_config
from tests.test_auditing import BARE, HARDENED
from tests.test_interrupts import finish, records, wait_for_records

# Volatile parts of a record: when it was made and how long it took.
VOLATILE = {"timestamp", "timings_ms"}
JSONL = Output(format="jsonl", progress=False)
CSV_VOLATILE = {"timestamp", "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few targets, so a short input still makes many (the parent plans them)."""
    monkeypatch.setattr(scale, "MIN_CHUNK", 1)
    monkeypatch.setattr(scale, "CHUNK_PER_CONCURRENCY", 4)


def lines_for(hosts: LoopbackHosts, count: int = 120) -> list[str]:
    ok = hosts.serve(replies(response(headers=[("Server", "loop")])))
    missing = hosts.serve(replies(response("404 Not Found")))
    lines = [f"127.0.0.1:{ok}/{i}" for i in range(count)]
    lines += [f"127.0.0.1:{missing}/gone{i}" for i in range(10)]
    lines += [f"127.0.0.1:{hosts.refused()}/", "not a target at all", lines[0]]
    return lines


def normal(format_name: str, data: bytes) -> Counter[str]:
    """The records of one output as a multiset, less what differs from run to run."""
    text = data.decode()
    if format_name == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        return Counter(
            json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True)
            for r in records
        )
    if format_name == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        return Counter(
            json.dumps({k: v for k, v in row.items() if k not in CSV_VOLATILE}, sort_keys=True)
            for row in rows
        )
    return Counter(text.splitlines())


def run_cli_like(
    config: Config, lines: list[str], out: Path, pool: scale.Pool | None
) -> tuple[bytes, bytes, runner.Outcome]:
    """What the afetch command does with these options: stdout in the chosen format, every
    record as JSON Lines in `out`."""
    chosen = make_format(config.output)
    stdout = io.BytesIO()
    writer = RecordWriter(
        chosen,
        stdout=stdout,
        file_path=str(out),
        append=False,
    )
    outcome = runner.run(config, lines, writer, pool=pool)
    return stdout.getvalue(), out.read_bytes(), outcome


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """One LocalCluster of 2 single-threaded worker processes for the module's Dask tests."""
    distributed = pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=scale.DASHBOARD
    ) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def pools(dask: bool) -> list[Any]:
    return ["dask"] if dask else ["workers"]


def make_pool(kind: str, request: pytest.FixtureRequest) -> scale.Pool:
    if kind == "dask":
        return scale.dask_pool(request.getfixturevalue("dask_client"))
    return scale.WorkerPool(2)


@pytest.mark.parametrize("kind", ["workers", "dask"])
@pytest.mark.parametrize("format_name", ["text", "jsonl", "csv"])
def test_fanned_out_run_writes_the_records_of_one_process(
    hosts: LoopbackHosts,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    kind: str,
    format_name: str,
) -> None:
    lines = lines_for(hosts)
    output = Output(format=format_name, filter_status=StatusSet.parse("404"), progress=False)
    config = Config(limits=make_config(concurrency=8).limits, output=output)
    alone = run_cli_like(config, lines, tmp_path / "one.jsonl", None)
    fanned = run_cli_like(config, lines, tmp_path / "many.jsonl", make_pool(kind, request))
    assert normal(format_name, fanned[0]) == normal(format_name, alone[0])
    assert normal("jsonl", fanned[1]) == normal("jsonl", alone[1])
    assert len(alone[1].splitlines()) == len(lines)  # every line once, the filtered ones too
    assert (fanned[2].tally.ok, fanned[2].tally.failed, fanned[2].tally.filtered) == (
        alone[2].tally.ok,
        alone[2].tally.failed,
        alone[2].tally.filtered,
    )
    if format_name == "csv":
        assert fanned[0].count(b"\ninput,") == 0 and fanned[0].startswith(b"input,")


# A run through a pool made in a fresh process, with one thread, as the afetch command makes it
# (a test's own process has its loopback servers' threads, so its pools spawn). argv: the
# format, the lines file, the stdout and -o files to write. Prints how the workers started,
# then how their replacements did, after a worker died.
FORKED_RUN = r"""
import json, multiprocessing, os, sys
from pathlib import Path
from fetcher import runner, scale
from fetcher.config import Config, Fanout, Output, StatusSet
from fetcher.output import RecordWriter, make_format
from tests.conftest import make_config

format_name, lines_file, stdout_file, out_file = sys.argv[1:5]
lines = json.loads(Path(lines_file).read_text())
output = Output(format=format_name, filter_status=StatusSet.parse("404"), progress=False)
config = Config(limits=make_config(concurrency=8).limits, output=output)

def started():
    own = Path("/proc/self/cmdline").read_bytes()
    kinds = set()
    for child in multiprocessing.active_children():
        try:
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
        except FileNotFoundError:  # one killed, and reaped meanwhile
            continue
        if cmdline:  # empty: one killed, not reaped yet
            spawned = b"spawn_main" in cmdline
            kinds.add("forked" if cmdline == own else "spawned" if spawned else "?")
    return ",".join(sorted(kinds))

pool = scale.open_pool(Fanout(workers=2))
pool.start()  # as run() does, first
print(pool.method, started())
with open(stdout_file, "wb") as stdout:
    writer = RecordWriter(make_format(output), stdout=stdout, file_path=out_file, append=False)
    runner.run(config, lines, writer, pool=pool)
print(scale._threads())  # the run's threads are gone with it
pool = scale.open_pool(Fanout(workers=2))
pool.start()
print(pool.method, started(), scale.start_method())  # its own thread runs now: spawn from here
for child in multiprocessing.active_children():
    child.kill()
pool.renew()
pool.submit(scale.run_chunk, config, lines[:1]).result(timeout=60)
print(started())
pool.close()
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize("format_name", ["text", "jsonl", "csv"])
def test_forked_workers_write_the_records_of_one_process(
    hosts: LoopbackHosts, tmp_path: Path, format_name: str
) -> None:
    """The afetch command's pool forks its workers (it has one thread when it makes them):
    the same records as one process, and a worker that replaces a dead one is spawned."""
    lines = lines_for(hosts)
    output = Output(format=format_name, filter_status=StatusSet.parse("404"), progress=False)
    config = Config(limits=make_config(concurrency=8).limits, output=output)
    alone = run_cli_like(config, lines, tmp_path / "one.jsonl", None)
    (tmp_path / "lines.json").write_text(json.dumps(lines))
    files = [tmp_path / name for name in ("lines.json", "stdout", "many.jsonl")]
    done = subprocess.run(
        [sys.executable, "-c", FORKED_RUN, format_name, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(__file__).resolve().parent.parent),
        start_new_session=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["fork forked", "1", "fork forked spawn", "spawned"], (
        done.stderr
    )
    assert normal(format_name, files[1].read_bytes()) == normal(format_name, alone[0])
    assert normal("jsonl", files[2].read_bytes()) == normal("jsonl", alone[1])


def test_workers_are_spawned_beside_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork copies the calling thread only: with another thread running, spawn; and where
    threads cannot be counted, or off Linux, spawn too. A pool asked to fork spawns if a
    thread began before it started."""
    before = scale._threads()
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert scale._threads() == before + 1 and scale.start_method() == "spawn"
        pool = scale.WorkerPool(1, method="fork")
        try:
            pool.start()
            assert pool.method == "spawn"
        finally:
            pool.close()
    finally:
        release.set()
        thread.join()
    monkeypatch.setattr(scale, "_threads", lambda: 1)
    if sys.platform == "linux":
        assert scale.start_method() == "fork"
    monkeypatch.setattr(scale, "sys", SimpleNamespace(platform="darwin"))
    assert scale.start_method() == "spawn"
    monkeypatch.undo()
    # scale's own name for os only: a listdir that fails, as without /proc
    monkeypatch.setattr(scale, "os", SimpleNamespace(listdir=lambda path: os.lstat(path + "/-")))
    assert scale._threads() == 0 and scale.start_method() == "spawn"


@pytest.mark.parametrize("kind", ["workers", "dask"])
def test_verbose_steps_of_a_fanned_out_run_reach_stderr(
    hosts: LoopbackHosts,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """-v: the lines one process writes to stderr, every one of them, from the workers too
    (they were lost: a chunk's engine ran without the tracer)."""
    lines = lines_for(hosts, count=40)
    output = Output(format="jsonl", progress=False, verbose=True)
    config = Config(limits=make_config(concurrency=8).limits, output=output)
    run_cli_like(config, lines, tmp_path / "one.jsonl", None)
    alone = capsys.readouterr().err
    run_cli_like(config, lines, tmp_path / "many.jsonl", make_pool(kind, request))
    fanned = capsys.readouterr().err
    assert "> GET /0 HTTP/1.1" in alone and "< HTTP/1.1 200 OK" in alone
    assert Counter(fanned.splitlines()) == Counter(alone.splitlines())


class _GoneStream(io.StringIO):
    """A stderr whose reader left: every write fails."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("kind", ["one process", "workers", "dask"])
def test_verbose_steps_lost_to_a_gone_stderr_lose_no_record(
    hosts: LoopbackHosts,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """-v with stderr gone: the steps cannot be written, the records still are, as they would
    be without -v. With workers the failed write used to end the run with a traceback, a
    chunk's records unwritten; in one process it made every record an internal error."""
    lines = lines_for(hosts, count=40)
    output = Output(format="jsonl", progress=False, verbose=True)
    config = Config(limits=make_config(concurrency=8).limits, output=output)
    pool = None if kind == "one process" else make_pool(kind, request)
    monkeypatch.setattr(sys, "stderr", _GoneStream())
    stdout, file, outcome = run_cli_like(config, lines, tmp_path / "out.jsonl", pool)
    assert len(stdout.splitlines()) == len(file.splitlines()) == len(lines)
    assert outcome.output_error is None
    kinds = {(json.loads(line).get("error") or {}).get("kind") for line in file.splitlines()}
    assert "internal-error" not in kinds, kinds


@pytest.mark.parametrize("kind", ["workers", "dask"])
def test_grade_and_expiry_filters_hold_across_workers(
    hosts: LoopbackHosts, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """--min-grade and --cert-expires-within pick a fanned-out run's stdout records as they
    do one process's (a chunk used to apply the status filters only)."""
    hardened = hosts.serve(replies(response("200 OK", HARDENED)))
    bare = hosts.serve(replies(response("200 OK", BARE)))
    lines = [f"http://127.0.0.1:{port}/{i}" for port in (hardened, bare) for i in range(6)]
    limits, audited = make_config(concurrency=4).limits, Request(audit=True)
    for output, shown in (
        (Output(format="jsonl", progress=False, min_grade="C+"), 6),  # the bare ones, F
        (Output(format="jsonl", progress=False, cert_expires_within=30), 0),  # no certificate
    ):
        config = Config(limits=limits, request=audited, output=output)
        alone = run_cli_like(config, lines, tmp_path / "one.jsonl", None)
        fanned = run_cli_like(config, lines, tmp_path / "many.jsonl", make_pool(kind, request))
        assert len(alone[0].splitlines()) == shown
        assert normal("jsonl", fanned[0]) == normal("jsonl", alone[0])
        assert normal("jsonl", fanned[1]) == normal("jsonl", alone[1])  # every record
        assert fanned[2].tally.filtered == alone[2].tally.filtered == len(lines) - shown


def test_order_input_holds_across_workers(hosts: LoopbackHosts, tmp_path: Path) -> None:
    lines = lines_for(hosts, 80)
    config = Config(
        limits=make_config(concurrency=8).limits,
        output=Output(format="jsonl", progress=False),
        order="input",
    )
    stdout, _, _ = run_cli_like(config, lines, tmp_path / "out.jsonl", scale.WorkerPool(2))
    assert [json.loads(line)["input"] for line in stdout.splitlines()] == lines


def test_resume_skips_what_the_file_holds_across_workers(
    hosts: LoopbackHosts, tmp_path: Path
) -> None:
    first, second = hosts.serve(replies(response())), hosts.serve(replies(response()))
    lines = [f"127.0.0.{i}" for i in range(1, 41)] + [f"127.0.0.1:{first}/named"]
    config = Config(
        limits=make_config(concurrency=8).limits,
        output=Output(format="jsonl", progress=False),
        ports=(first, second),
    )
    earlier = tmp_path / "earlier.jsonl"
    done = [(line, first) for line in lines[:30:2]] + [(lines[-1], None)]
    earlier.write_text(
        "".join(json.dumps({"input": line, "port": port}) + "\n" for line, port in done)
    )
    recorded = Recorded.load(str(earlier), by_port=True)
    writer = RecordWriter(Format(format_jsonl), stdout=io.BytesIO(), file_path=str(tmp_path / "o"))
    runner.run(config, lines, writer, recorded=recorded, pool=scale.WorkerPool(2))
    got = Counter(
        (r["input"], r["port"]) for r in map(json.loads, (tmp_path / "o").read_text().splitlines())
    )
    expected = Counter(
        (line, port) for line in lines[:-1] for port in (first, second) if (line, port) not in done
    )
    assert got == expected
    assert recorded.skipped == len(done)


class CountingPool(scale.WorkerPool):
    renewed = 0

    def renew(self) -> None:
        self.renewed += 1
        super().renew()


def fan(config: Config, lines: list[str], pool: scale.Pool, on_chunk: Callable[[], None]) -> bytes:
    out = io.BytesIO()
    writer = RecordWriter(Format(format_jsonl), stdout=out)

    async def go() -> None:
        await scale.FanOut(config, pool, writer, Tally(), on_chunk=on_chunk).run(lines)

    try:
        asyncio.run(go())
    finally:
        pool.close()
        writer.close()
    return out.getvalue()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("kind", ["workers", "dask"])
def test_a_killed_worker_loses_and_doubles_nothing(
    hosts: LoopbackHosts, request: pytest.FixtureRequest, kind: str
) -> None:
    """And with --workers the pool's other workers die with it (their chunks are sent again):
    a survivor whose chunk's records outgrew the result pipe (64 KB on Linux) blocked writing
    them, unread, for good, and the interpreter's exit waited on the broken pool's thread,
    which waited on that worker: the run never ended."""
    port = hosts.serve(delayed(response(), 0.1))
    long = "x" * 4000  # a chunk of 16 records, each with its 4 KB path twice: about 130 KB
    lines = [f"127.0.0.1:{port}/{i}/{long}" for i in range(96)]
    config = Config(limits=make_config(concurrency=8).limits, output=Output(format="jsonl"))
    pool: scale.Pool
    if kind == "dask":
        client = request.getfixturevalue("dask_client")
        pool = scale.dask_pool(client)
        before = set(client.run(os.getpid).values())

        def pids() -> list[int]:
            return list(client.run(os.getpid).values())
    else:
        others = {child.pid for child in multiprocessing.active_children()}  # Dask's, say
        pool = counting = CountingPool(2)

        def pids() -> list[int]:
            children = multiprocessing.active_children()
            return [child.pid for child in children if child.pid and child.pid not in others]

    killed: list[int] = []

    def kill_one() -> None:
        if not killed:  # the first chunk is back: the others are out, mid-chunk
            killed.append(pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    data = fan(config, lines, pool, kill_one)
    got = Counter(json.loads(line)["input"] for line in data.splitlines())
    assert got == Counter(lines)
    assert killed
    if kind == "dask":
        assert killed[0] in before
    else:
        assert counting.renewed >= 1
        end = time.monotonic() + 20.0  # wide: a worker going away is gone in milliseconds
        while pids() and time.monotonic() < end:
            time.sleep(0.05)
        assert pids() == []


# Run in a process of its own, since the hang it guards against would keep any process's exit
# waiting for good: the pool's result thread is held (in a done-callback, where it runs them)
# while a worker finishes a chunk of about 530 KB of records; every worker is then killed and
# the thread let go. argv: a fast port, a slow port.
MID_SEND = r"""
import concurrent.futures as cf, multiprocessing, os, sys, threading, time
from fetcher import scale
from fetcher.config import Config, Output

fast, slow = sys.argv[1:3]
config = Config(output=Output(format="jsonl"))
pool = scale.WorkerPool(2)
small = pool.submit(scale.run_chunk, config, [f"127.0.0.1:{fast}/"])
lines = [f"127.0.0.1:{slow}/{i}/{'x' * 4000}" for i in range(32)]
big = pool.submit(scale.run_chunk, config, lines, file=True)
held, release = threading.Event(), threading.Event()

def hold(_):
    if threading.current_thread() is not threading.main_thread():
        held.set()
        release.wait()

small.add_done_callback(hold)
held.wait(30)
time.sleep(2.0)  # the big chunk's 0.5 s fetches are over, and its result sent (or half sent)
for process in multiprocessing.active_children():
    process.kill()
release.set()
try:
    result = pool.received(big.result(timeout=30))
    print("back", result.records, len(result.file))
except cf.BrokenExecutor:
    print("broken")
except TimeoutError:
    print("hung")
    os._exit(3)
pool.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_worker_killed_while_it_sends_a_chunk_back_ends_nothing(hosts: LoopbackHosts) -> None:
    """A worker killed part-way through writing a chunk's records to the pool's result pipe
    left the pool's thread reading the rest of that message for good (the pipe never ends: this
    process holds its other end), so the pool was never found broken and the run never ended.
    Seen in the killed-worker test. A worker now sends back only where its records are."""
    fast = hosts.serve(replies(response()))
    slow = hosts.serve(delayed(response(), 0.5))
    root = str(Path(__file__).resolve().parent.parent)
    try:
        done = subprocess.run(
            [sys.executable, "-c", MID_SEND, str(fast), str(slow)],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=root,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the scenario itself hung: {exc.stderr!r}") from None
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(("back 32 ", "broken")), done.stdout


def test_a_chunk_comes_back_in_a_file_or_whole(
    hosts: LoopbackHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a --workers worker sends back is a file's name, the file read once and removed;
    where no file can be written (a full disk, say), the chunk's result itself."""
    port = hosts.serve(replies(response()))
    args = (make_config(concurrency=2), [f"127.0.0.1:{port}/", "bad target"])
    pool = scale.WorkerPool(1)
    try:
        sent = scale._spilled(str(tmp_path), scale.run_chunk, args, {"number": 5})
        assert isinstance(sent, str) and Path(sent).parent == tmp_path
        assert len(pickle.dumps(sent)) < 4096  # one write to a pipe, whole or not at all
        got = pool.received(sent)
        assert (got.number, got.records, got.tally.ok) == (5, 2, 1)
        assert list(tmp_path.iterdir()) == []
        whole = scale._spilled(str(tmp_path / "gone"), scale.run_chunk, args, {"number": 6})
        assert isinstance(whole, scale.ChunkResult) and pool.received(whole) is whole
        whole = scale._spilled(None, scale.run_chunk, args, {"number": 8})
        assert isinstance(whole, scale.ChunkResult) and whole.number == 8

        def full(*_: object, **__: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(pickle, "dump", full)
        whole = scale._spilled(str(tmp_path), scale.run_chunk, args, {"number": 7})
        assert isinstance(whole, scale.ChunkResult) and whole.number == 7
        assert list(tmp_path.iterdir()) == []
    finally:
        pool.close()
    monkeypatch.setattr(tempfile, "mkdtemp", full)
    assert scale._spill_directory() is None


def test_a_left_chunk_directory_goes_when_the_next_pool_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run SIGKILLed with its pool open leaves afetch-PID-... behind, unlocked: the next
    pool's start removes it once past its grace, and nothing else: a live pool's (locked, however
    old), a fresh one, another user's, a file or a link of that name, other names."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = time.time() - scale.SPILL_GRACE_S - 60

    def left(name: str, mtime: float = old) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "chunk-3-abc").write_bytes(b"records")
        os.utime(path, (mtime, mtime))
        return path

    dead = left("afetch-4193-k2j4")
    live = left("afetch-4194-x81q")
    held = scale._lock(str(live))  # another pool's, still running
    fresh = left("afetch-4195-fr3s", time.time())  # made a moment ago, maybe not locked yet
    elsewhere = left("outside")
    (tmp_path / "afetch-4196-link").symlink_to(elsewhere)
    (tmp_path / "afetch-4197-file").write_text("a file")
    os.utime(tmp_path / "afetch-4197-file", (old, old))
    others = [
        left("afetch-bench-xyz"),
        left("afetch-k2j4_9q"),
        left("4198-abc"),
        left("afetch-²-x"),
    ]
    theirs = left("afetch-4199-them")
    if os.geteuid() == 0:
        os.chown(theirs, os.getuid() + 1, -1)
    else:
        theirs = live  # cannot give one away: the live one stands in
    try:
        created = scale._spill_directory()
        assert created is not None
        path, lock = created
        assert Path(path).parent == tmp_path and lock is not None
        assert Path(path).name.startswith(f"afetch-{os.getpid()}-")
        assert not dead.exists()
        kept = [live, fresh, elsewhere / "chunk-3-abc", theirs, *others]
        assert all(path.exists() for path in kept)
        assert (tmp_path / "afetch-4196-link").is_symlink()
        assert (tmp_path / "afetch-4197-file").is_file()
        # The new pool's own directory is locked: past its grace, the next sweep keeps it.
        scale._sweep_stale_spills(str(tmp_path), now=time.time() + 2 * scale.SPILL_GRACE_S)
        assert Path(path).exists() and live.exists()
        os.close(lock)
        scale._sweep_stale_spills(str(tmp_path), now=time.time() + 2 * scale.SPILL_GRACE_S)
        assert not Path(path).exists() and live.exists()
    finally:
        assert held is not None
        os.close(held)


def test_a_pool_has_its_chunk_directory_whatever_the_sweep_meets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def unreadable(root: str, now: float | None = None) -> None:
        raise PermissionError(13, "Permission denied", root)

    monkeypatch.setattr(scale, "_sweep_stale_spills", unreadable)
    created = scale._spill_directory()
    assert created is not None and Path(created[0]).is_dir() and created[1] is not None
    os.close(created[1])
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    assert scale._spill_directory() is None  # nowhere to make it: chunks come back whole


def test_a_chunk_directory_that_cannot_be_locked_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without flock: a sweep could not tell the pool's directory is in use, so
    the pool goes without one."""
    import fcntl

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def refused(descriptor: int, operation: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(fcntl, "flock", refused)
    assert scale._spill_directory() is None
    assert list(tmp_path.iterdir()) == []


class BreakingPool(CountingPool):
    """A pool found broken when a chunk is handed to it, as a worker that died between two
    chunks leaves it, before any chunk out came back to say so."""

    submits = 0

    def submit(self, fn: Callable[..., scale.ChunkResult], /, *args: Any, **kwargs: Any) -> Any:
        self.submits += 1
        if self.submits == 3:
            raise cf.BrokenExecutor("A child process terminated abruptly")
        return super().submit(fn, *args, **kwargs)


def test_a_pool_found_broken_at_submit_loses_and_doubles_nothing(hosts: LoopbackHosts) -> None:
    """The run ended with exit 70 (BrokenProcessPool out of submit) when a worker died while
    the parent was handing out a chunk; now that chunk and those out go to a new pool."""
    port = hosts.serve(replies(response()))
    lines = [f"127.0.0.1:{port}/{i}" for i in range(48)]
    config = Config(limits=make_config(concurrency=8).limits, output=Output(format="jsonl"))
    pool = BreakingPool(2)
    data = fan(config, lines, pool, lambda: None)
    assert Counter(json.loads(line)["input"] for line in data.splitlines()) == Counter(lines)
    assert pool.renewed == 1


def counting_host(hosts: LoopbackHosts, peak: list[int], starts: list[float]) -> int:
    active = [0]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        starts.append(time.monotonic())
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.04)
        active[0] -= 1
        writer.write(response())
        await writer.drain()

    return hosts.serve(script)


def test_per_host_holds_across_workers(hosts: LoopbackHosts) -> None:
    peak: list[int] = [0]
    port = counting_host(hosts, peak, [])
    lines = [f"127.0.0.1:{port}/{i}" for i in range(24)]
    config = Config(limits=make_config(concurrency=8, per_host=1).limits, output=JSONL)
    data = fan(config, lines, scale.WorkerPool(2), lambda: None)
    assert data.count(b"\n") == 24
    assert peak[0] == 1


def test_rate_holds_across_workers(hosts: LoopbackHosts) -> None:
    starts: list[float] = []
    port = counting_host(hosts, [0], starts)
    lines = [f"127.0.0.1:{port}/{i}" for i in range(30)]
    rate = 20
    config = Config(limits=make_config(concurrency=8, rate=rate).limits, output=JSONL)
    fan(config, lines, scale.WorkerPool(2), lambda: None)
    starts.sort()
    assert len(starts) == 30
    # Two chunks out at 10/s each: at most 2 * (10 * 1.001 + 1) = 22 in any second (a margin
    # for a loaded machine); both at the full rate would put about 40 there.
    most = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert most <= 26


def test_run_chunk_is_pure_and_picklable(hosts: LoopbackHosts) -> None:
    port = hosts.serve(replies(response()))
    config = make_config(concurrency=4)
    assert pickle.loads(pickle.dumps(config)) == config
    result = scale.run_chunk(
        config, [f"127.0.0.1:{port}/a", "# comment", "bad target"], number=7, file=True
    )
    again = pickle.loads(pickle.dumps(result))
    assert (again.number, again.records, again.tally.ok, again.tally.failed) == (7, 2, 1, 1)
    assert again.stdout.count(b"\n") >= 2 and again.file.count(b"\n") == 2
    assert not again.interrupted
    # Only the file: nothing formatted for stdout; neither: nothing counted as written.
    assert scale.run_chunk(config, ["bad target"], stdout=False, file=True).stdout == b""
    assert scale.run_chunk(config, ["bad target"], stdout=False).records == 0


def test_run_chunk_with_any_executor(hosts: LoopbackHosts) -> None:
    """The library call: chunks on a plain concurrent.futures executor."""
    from concurrent.futures import ThreadPoolExecutor

    port = hosts.serve(replies(response()))
    config = Config(limits=make_config(concurrency=4).limits, output=JSONL)
    with ThreadPoolExecutor(2) as executor:
        futures = [
            executor.submit(
                scale.run_chunk, config, [f"127.0.0.1:{port}/{n}/{i}" for i in range(5)]
            )
            for n in range(4)
        ]
        assert sum(f.result().tally.ok for f in futures) == 20
    pool = scale.ExecutorPool(ThreadPoolExecutor(2), 2)
    data = fan(config, [f"127.0.0.1:{port}/{i}" for i in range(30)], pool, lambda: None)
    assert data.count(b"\n") == 30


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_cover_every_line_exactly_once(count: int) -> None:
    lines = [f"host{i}.example:{80 + i % 3}/p{i}" for i in range(300)] + ["not a target"]
    shares = Counter(
        line for k in range(1, count + 1) for line in lines if scale.in_shard(line, (k, count))
    )
    assert shares == Counter(lines)
    # Every target of one host falls in the same shard, whatever its port or path.
    for k in range(1, count + 1):
        assert scale.in_shard("a.example:81/x", (k, count)) == scale.in_shard(
            "http://A.example/", (k, count)
        )


def test_a_shard_still_spreads_over_every_lane() -> None:
    lines = [f"h{i}.example" for i in range(400)]
    for shard in ((1, 2), (2, 2), (3, 4)):
        mine = [line for line in lines if scale.in_shard(line, shard)]
        assert {scale.lane_of(line, 2) for line in mine} == {0, 1}


def test_shard_lines_filters_lazily() -> None:
    async def go(shard: tuple[int, int]) -> list[str]:
        return [line async for line in scale.shard_lines(lines, shard, "http")]

    lines = [f"h{i}.example" for i in range(50)] + ["", "# note"]
    parts = [asyncio.run(go((k, 3))) for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(lines[:50])
    assert all(parts)


def test_tally_merge_adds_counts_and_samples_both() -> None:
    a, b = Tally(), Tally()
    a.ok, a.failed, a.by_class, a.by_kind = 3, 1, {"2xx": 3}, {"timeout": 1}
    b.ok, b.filtered, b.by_class = 2, 1, {"2xx": 1, "4xx": 1}
    for value in range(100):
        a.latency_ms.add(float(value))
    b.latency_ms.add(500.0)
    a.merge(b)
    assert (a.ok, a.failed, a.filtered) == (5, 1, 1)
    assert a.by_class == {"2xx": 4, "4xx": 1} and a.by_kind == {"timeout": 1}
    assert a.latency_ms.seen == 101 and a.latency_ms.maximum == 500.0


def test_tally_merge_keeps_the_tls_and_grade_counts() -> None:
    """--stats of a fanned-out run shows the tls and grades lines one process shows."""
    a, b = Tally(), Tally()
    a.tls_versions, a.by_grade = {"TLSv1.3": 1}, {"A": 1}
    b.tls_versions, b.by_grade = {"TLSv1.3": 2, "TLSv1.2": 1}, {"A": 1, "F": 2}
    b.expiring, b.unverified = 1, {"certificate has expired": 1}
    a.merge(b)
    assert a.tls_versions == {"TLSv1.3": 3, "TLSv1.2": 1} and a.by_grade == {"A": 2, "F": 2}
    assert a.expiring == 1 and a.unverified == {"certificate has expired": 1}
    summary = a.summary()
    assert "expiring within 30 days 1" in summary and "grades   A 2  F 2" in summary


def filled(reservoir: Reservoir, value: float, count: int) -> Reservoir:
    """`reservoir` after `count` adds of `value`."""
    for _ in range(count):
        reservoir.add(value)
    return reservoir


def test_reservoir_merge_stays_bounded_and_proportional() -> None:
    big, small = filled(Reservoir(size=100), 1.0, 900), filled(Reservoir(size=100), 2.0, 100)
    big.merge(small)
    assert len(big.sample) == 100 and big.seen == 1000
    assert 5 <= big.sample.count(2.0) <= 15  # 10% of what was seen came from `small`
    empty = Reservoir()
    empty.merge(Reservoir())
    assert empty.maximum is None and empty.percentile(50) is None


def test_reservoir_merged_chunk_after_chunk_samples_every_chunk_alike() -> None:
    """A run's sample takes 40 workers' chunks in turn: each chunk holds its share of it (1/40,
    25 of 1 000), the late ones as the early; a chunk larger than a sample not yet full fills
    it in proportion too."""
    run = Reservoir(size=1000, rng=random.Random(7))
    for number in range(40):
        run.merge(filled(Reservoir(size=1000), float(number), 250))
    shares = Counter(run.sample)
    assert len(run.sample) == 1000 and run.seen == 10_000
    assert all(10 <= shares[float(number)] <= 45 for number in range(40)), shares
    part, big = filled(Reservoir(size=100), 1.0, 30), filled(Reservoir(size=100), 2.0, 500)
    part.merge(big)
    assert len(part.sample) == 100 and part.sample.count(1.0) == 6  # 30 of 530 seen


def test_fanout_options_are_checked() -> None:
    assert parse_workers("3") == 3 and parse_workers("auto") >= 1
    assert parse_shard("2/4") == (2, 4) and parse_shard("") is None
    for bad in ("0", "-1", "x"):
        with pytest.raises(ConfigError, match="worker count"):
            parse_workers(bad)
    for bad in ("0/3", "4/3", "1", "a/b"):
        with pytest.raises(ConfigError, match="invalid shard"):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="exclude each other"):
        Fanout(workers=2, cluster="local:2")
    with pytest.raises(ConfigError, match="local:N"):
        Fanout(cluster="local:0")
    with pytest.raises(ConfigError, match="empty"):
        Fanout(cluster=" ")
    with pytest.raises(ConfigError, match="shard"):
        Fanout(shard=(3, 2))
    with pytest.raises(ConfigError, match="workers must be"):
        Fanout(workers=-1)
    both = make_config(per_host=1, order="input")
    with pytest.raises(ConfigError, match="--per-host with --order input"):
        Fanout(workers=2).check(both)
    Fanout().check(both)  # in one process both hold
    assert not Fanout().parallel and Fanout(cluster="tcp://h:8786").parallel


def test_plan_shares_concurrency_and_rate() -> None:
    plan = scale.Plan.of(make_config(concurrency=200, rate=100.0), 4)
    assert plan.config.limits.concurrency == 50 and plan.in_flight == 4
    assert plan.config.limits.rate == 25.0 and plan.lanes == 1
    plan = scale.Plan.of(make_config(concurrency=3, per_host=2), 2)
    assert plan.lanes == 2 and plan.in_flight == 2 and plan.config.limits.concurrency == 2
    assert scale.Plan.of(make_config(concurrency=10), 2).in_flight == 4


def test_plan_makes_chunks_larger_while_the_input_lasts() -> None:
    """With the autouse small_chunks: 4 targets per unit of a chunk's concurrency."""
    plan = scale.Plan.of(make_config(concurrency=20), 2, factor=4)
    assert (plan.chunk_targets, plan.steady_targets, plan.lookahead) == (40, 160, 320)
    assert scale.Plan.of(make_config(concurrency=4000), 2, factor=4).steady_targets == 5000
    per_host = scale.Plan.of(make_config(concurrency=20, per_host=2), 2, factor=4)
    assert per_host.lanes == 2 and per_host.lookahead == 0  # a lane's chunks stay small
    assert per_host.steady_targets == per_host.chunk_targets


class RecordingExecutor(cf.ThreadPoolExecutor):
    """Runs chunks on threads, each `busy_s` longer; notes each chunk's size, how far the
    input had been read when it was given out, and whether the input had ended."""

    def __init__(self, read: list[int], ended: list[bool], busy_s: float = 0.0) -> None:
        super().__init__(2)
        self.read, self.ended, self.busy_s = read, ended, busy_s
        self.sizes: list[int] = []
        self.ahead: list[int] = []
        self.after_end: list[bool] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        self.sizes.append(len(args[1]))
        self.ahead.append(self.read[0] - sum(self.sizes))
        self.after_end.append(self.ended[0])
        return super().submit(self._busy, fn, *args, **kwargs)

    def _busy(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.busy_s)
        return fn(*args, **kwargs)


def fan_recorded(
    hosts: LoopbackHosts,
    count: int,
    *,
    busy_s: float = 0.0,
    burst: int = 0,
    pause_s: float = 0.0,
    per_host: int = 0,
    slots: int = 2,
) -> tuple[RecordingExecutor, scale.Plan, Counter[str]]:
    """`count` lines through a FanOut over a RecordingExecutor with chunk_factor 4 (chunks of
    8, steady 32, 64 read ahead, 4 out, at -c 4 over 2 slots); with `burst`, the lines come
    `burst` at a time, `pause_s` apart. Ends within 60 s or fails."""
    port = hosts.serve(replies(response()))
    read, ended = [0], [False]

    async def lines() -> AsyncIterator[str]:
        for i in range(count):
            if burst and i and i % burst == 0:
                await asyncio.sleep(pause_s)
            read[0] += 1
            yield f"127.0.0.1:{port}/{i}"
        ended[0] = True

    limits = make_config(concurrency=4, per_host=per_host).limits
    config = Config(limits=limits, output=Output(format="jsonl"))
    executor = RecordingExecutor(read, ended, busy_s)
    pool = scale.ExecutorPool(executor, slots=slots)
    pool.chunk_factor = 4
    out = io.BytesIO()
    writer = RecordWriter(Format(format_jsonl), stdout=out)

    async def go() -> None:
        fan = scale.FanOut(config, pool, writer, Tally())
        await asyncio.wait_for(fan.run(lines()), 60)

    try:
        asyncio.run(go())
    finally:
        pool.close()
        writer.close()
    got = Counter(json.loads(line)["input"] for line in out.getvalue().splitlines())
    assert got == Counter(f"127.0.0.1:{port}/{i}" for i in range(count))
    assert sum(executor.sizes) == count
    return executor, scale.Plan.of(config, slots, 4), got


@pytest.mark.parametrize("count", [1, 30, 100, 1000])
def test_chunks_are_steady_then_shrink_as_the_input_ends(hosts: LoopbackHosts, count: int) -> None:
    """Busy workers: large chunks while the input lasts, read ahead a bounded window; the
    window's last targets in chunks that shrink, so no worker ends alone on a large one."""
    executor, plan, _ = fan_recorded(hosts, count, busy_s=0.03)
    sizes = executor.sizes
    assert sizes[0] == min(count, plan.chunk_targets)  # at once, not once the window filled
    assert max(executor.ahead) <= plan.steady_targets + plan.lookahead
    assert max(sizes) <= plan.steady_targets
    tail = [size for size, late in zip(sizes, executor.after_end, strict=True) if late]
    assert tail == sorted(tail, reverse=True)  # shrinking to the end
    assert all(size >= plan.chunk_targets for size in tail[:-1])
    if count == 1000:
        assert sizes.count(plan.steady_targets) >= 20 and len(tail) >= 4


def test_a_slow_input_is_sent_as_it_comes(hosts: LoopbackHosts) -> None:
    """Lines that come 8 at a time, 0.1 s apart, while the workers idle: each 8 go out as they
    arrive. The window waited to fill (32 + 64 targets) while the workers idled: nothing of
    this input went out before it ended."""
    executor, plan, _ = fan_recorded(hosts, 80, burst=8, pause_s=0.1)
    assert max(executor.ahead) <= 2 * plan.chunk_targets, executor.ahead
    assert not all(executor.after_end)


def test_per_host_on_one_slot_ends(hosts: LoopbackHosts) -> None:
    """--per-host with one worker (--workers 1, local:1, a machine of one CPU): the plan had a
    steady chunk of 0 targets, and the run sent empty chunks for good."""
    executor, plan, _ = fan_recorded(hosts, 20, per_host=2, slots=1)
    assert plan.lanes == 1 and plan.steady_targets == plan.chunk_targets
    assert all(executor.sizes)


def test_a_local_cluster_is_the_runs_own() -> None:
    """local:N's workers are afetch's: chunks tune them (Pool.owned), they fork from a server
    that imported distributed and afetch once, and neither the profiler, the loop's tick nor
    the memory monitor wakes them every few ms; the caller's Dask configuration is as it was."""
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    import dask.config

    pool = scale.open_dask("local:1")
    try:
        assert pool.owned and pool.slots == 1
        on_worker = pool.submit(dask.config.get, "distributed.worker.profile.enabled").result()
        assert on_worker is False
        assert pool.submit(dask.config.get, "distributed.admin.tick.interval").result() == "1s"
        monitor = "distributed.worker.memory.monitor-interval"
        assert pool.submit(dask.config.get, monitor).result() == "1s"
        # Forked by multiprocessing's fork server, not started by this process itself, and
        # with afetch's engine imported there, before the worker was forked.
        assert pool.submit(os.getppid).result() != os.getpid()
        assert pool.submit(lambda: "fetcher.scale" in sys.modules).result()
    finally:
        pool.close()
    assert dask.config.get("distributed.worker.profile.enabled") is True


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks")
def test_a_ctrl_c_while_the_fork_server_starts_is_not_lost() -> None:
    """The fork server starts with SIGINT ignored, and signals blocked: a Ctrl-C meanwhile
    must wait for afetch's handler, not meet the ignored SIGINT. The resource tracker's first
    start, which unblocks both signals, used to happen inside that window (in a fresh process,
    as here: this one's tracker runs already)."""
    script = """
import multiprocessing.forkserver, multiprocessing.resource_tracker, os, signal
from fetcher import scale
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(1))
real = multiprocessing.forkserver.ensure_running
def starting():  # what ensure_running does first, then a Ctrl-C while the server starts
    multiprocessing.resource_tracker.ensure_running()
    os.kill(os.getpid(), signal.SIGINT)
    real()
multiprocessing.forkserver.ensure_running = starting
scale._start_fork_server()
print(len(got), signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True"]


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks")
def test_a_pending_ctrl_c_is_not_ignored_away() -> None:
    """A Ctrl-C that came after the signals were blocked, before SIGINT was to be ignored, is
    pending: ignoring SIGINT then would discard it, so it is not ignored."""
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: got.append(1))
    try:
        with scale._signals_blocked():
            # To this thread: sent to the process, another thread of pytest's that leaves
            # SIGINT unblocked (a Dask client's) could take it, and nothing would be pending.
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            with scale._sigint_ignored():
                assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        assert got == [1]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_cluster_without_a_scheduler_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    monkeypatch.setattr(scale, "DASK_CONNECT_TIMEOUT", "0.5s")
    with pytest.raises(ConfigError, match="cannot reach the scheduler"):
        scale.open_dask("tcp://127.0.0.1:1")


@pytest.mark.parametrize("address", ["bogus", "tcp://", "tcp://127.0.0.1:notaport"])
def test_cluster_with_a_malformed_address_is_a_usage_error(address: str) -> None:
    """Dask refuses an address it cannot parse with a ValueError: a usage error, never exit 70."""
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    with pytest.raises(ConfigError, match="not a scheduler address"):
        scale.open_dask(address)


@pytest.mark.parametrize("users", [{}, {"DASK_LOGGING__DISTRIBUTED": "info"}])
def test_dask_logs_stay_quiet_unless_the_user_asks(
    monkeypatch: pytest.MonkeyPatch, users: dict[str, str]
) -> None:
    """afetch's DASK_LOGGING, set beside a user's DASK_LOGGING__DISTRIBUTED and read after it,
    replaced it: the user could not have Dask's logs back."""
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    for name in [name for name in os.environ if name.startswith("DASK_LOGGING")]:
        monkeypatch.delenv(name)
    for name, value in users.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        scale.open_dask("bogus")
    assert ("DASK_LOGGING" in os.environ) is not bool(users)


def test_a_cluster_that_failed_to_start_leaves_nothing_running() -> None:
    """A Client that could not start was left in a reference cycle with its event loop's thread
    running; when the collector later reached it inside the next Client's start, its __del__
    and that start waited on one lock of Dask's: a second open_dask in the process hung."""
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    script = """
import threading
from fetcher import scale
from fetcher.config import ConfigError
for address in ("bogus", "tcp://"):
    try:
        scale.open_dask(address)
    except ConfigError:
        pass
    print(sum(thread.name == "IO loop" for thread in threading.enumerate()))
"""
    # Before, the second address hung for good: the timeout is that case's failure.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]


def gone(pgid: int, within: float) -> bool:
    """Whether every process of the group has exited within `within` seconds (a zombie has:
    an orphan's is reaped by whatever PID 1 is, which may be slow, or never, in a container)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not any(state != "Z" for state in _group_states(pgid)):
            return True
        time.sleep(0.05)
    return False


def _group_states(pgid: int) -> list[str]:
    """The states of the group's processes: /proc on Linux; elsewhere one "R" while any is."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return ["R"]
    states = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
                if int(fields[2]) == pgid:
                    states.append(fields[0])
    return states


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
@pytest.mark.parametrize(
    ("signum", "group", "code", "fanout"),
    [
        pytest.param(
            signal.SIGINT, True, 130, ("--workers", "2"), id="ctrl-c-to-the-terminal-group"
        ),
        pytest.param(signal.SIGTERM, False, 143, ("--workers", "2"), id="sigterm-to-afetch"),
        # Its workers and their fork server got the group's SIGINT as KeyboardInterrupt, each
        # with a traceback on stderr.
        pytest.param(
            signal.SIGINT, True, 130, ("--cluster", "local:2"), id="ctrl-c-to-a-local-cluster"
        ),
    ],
)
def test_a_signal_stops_every_worker_and_leaves_no_process(
    hosts: LoopbackHosts,
    tmp_path: Path,
    signum: int,
    group: bool,
    code: int,
    fanout: tuple[str, ...],
) -> None:
    if fanout[0] == "--cluster":
        pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    port = hosts.serve(delayed(response(), 0.02))
    lines = [f"127.0.0.1:{port}/{i}" for i in range(6000)]
    list_file, out = tmp_path / "hosts.txt", tmp_path / "out.jsonl"
    list_file.write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "fetcher", *fanout, "-c", "20", "-q"]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # see test_interrupts
    try:
        process = subprocess.Popen(
            [*argv, "-l", str(list_file), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group, as a shell's foreground job
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for_records(out, 1)
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        err = finish(process, 30)
        assert process.returncode == code, err
        assert b"Traceback" not in err and b"interrupted" in err
        assert gone(process.pid, 10), "a worker outlived the run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    written = Counter(str(r["input"]) for r in records(out))
    assert 1 <= len(written) < len(lines) and max(written.values()) == 1


# A signal at start-up, sent by the command to itself: just before run() (the gap between
# prepare() and run() in cli.afetch), or just after its workers started, inside run().
# argv: the moment, then afetch's arguments.
SIGNAL_AT_START = r"""
import os, signal, sys
from fetcher import process, runner, scale

moment = sys.argv[1]
if moment == "before-the-run":
    run = runner.Prepared.run

    def signalled(self):
        os.kill(os.getpid(), signal.SIGINT)
        return run(self)

    runner.Prepared.run = signalled
else:
    start = scale.WorkerPool.start

    def signalled(self):
        start(self)
        os.kill(os.getpid(), signal.SIGINT)

    scale.WorkerPool.start = signalled
sys.argv = ["afetch", *sys.argv[2:]]
process.main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
@pytest.mark.parametrize("moment", ["before-the-run", "as-the-workers-start"])
def test_a_signal_at_start_up_leaves_no_worker(
    hosts: LoopbackHosts, tmp_path: Path, moment: str
) -> None:
    """The workers were started when the pool was made, before the run took over the signals:
    a Ctrl-C then ended afetch at once (exit 130, as it should) and left them running, ignoring
    SIGINT and SIGTERM and holding its stdout, so a pipe's reader waited for good. They now
    start inside the run, where a signal stops it and closes the pool."""
    port = hosts.serve(replies(response()))
    list_file = tmp_path / "hosts.txt"
    list_file.write_text("".join(f"127.0.0.1:{port}/{i}\n" for i in range(50)))
    argv = [moment, "--workers", "2", "-q", "--json", "-l", str(list_file)]
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_AT_START, *argv],
        stdout=subprocess.PIPE,  # a pipe's reader: it gets its end only when no worker holds it
        stderr=subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parent.parent),
        start_new_session=True,
    )
    try:
        err = finish(process, 30)
        assert process.returncode == 130, err
        # Nor multiprocessing's "leaked semaphore objects" warning, after afetch ended.
        assert b"Traceback" not in err and b"Warning" not in err, err
        assert gone(process.pid, 10), "a worker outlived the run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG")
def test_the_workers_die_with_a_killed_afetch(hosts: LoopbackHosts, tmp_path: Path) -> None:
    """afetch SIGKILLed mid-run (or out at once on a second Ctrl-C): its workers, which ignore
    SIGINT and SIGTERM, kept its stdout open, so a pipe's reader waited for an end that never
    came, and forked ones its chunk directory's lock too, which kept the next run's sweep
    from removing it. The kernel now kills them with afetch."""
    port = hosts.serve(delayed(response(), 0.02))
    list_file, out = tmp_path / "hosts.txt", tmp_path / "out.jsonl"
    list_file.write_text("".join(f"127.0.0.1:{port}/{i}\n" for i in range(6000)))
    argv = [sys.executable, "-m", "fetcher", "--workers", "2", "-c", "20", "-q", "--json"]
    spills = tmp_path / "tmp"
    spills.mkdir()
    process = subprocess.Popen(
        [*argv, "-l", str(list_file), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(spills)},
        start_new_session=True,
    )
    assert process.stdout is not None
    reader = threading.Thread(target=process.stdout.read)  # `| jq`: to the pipe's end
    reader.start()
    try:
        wait_for_records(out, 1)
        process.kill()
        reader.join(30)
        assert not reader.is_alive(), "afetch's stdout still open 30 s after it was killed"
        process.wait(10)
        assert gone(process.pid, 10), "a worker outlived afetch"
        (left,) = spills.glob("afetch-*")
        os.close(scale._lock(str(left)) or -1)  # nobody holds its lock: the next sweep may go
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        reader.join(10)
        process.wait(10)
        process.stdout.close()


# argv: the pid to die with. Prints the death signal the kernel now holds for this process.
DIE_WITH = r"""
import ctypes, sys
from fetcher import scale

scale._die_with(int(sys.argv[1]))
held = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(held), 0, 0, 0)  # PR_GET_PDEATHSIG
print(held.value)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG")
def test_a_worker_whose_parent_is_gone_already_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker asks to be SIGKILLed with its parent; between its start and that request the
    parent may have died: it ends then. Where it cannot ask, it still checks."""
    root = str(Path(__file__).resolve().parent.parent)

    def worker(parent: int) -> tuple[int, bytes]:
        argv = [sys.executable, "-c", DIE_WITH, str(parent)]
        done = subprocess.run(argv, cwd=root, capture_output=True, check=False, timeout=60)
        return done.returncode, done.stdout

    assert worker(os.getpid()) == (0, b"%d\n" % signal.SIGKILL)
    assert worker(_dead_pid()) == (1, b"")
    monkeypatch.setattr(scale, "sys", SimpleNamespace(platform="darwin"))
    scale._die_with(os.getppid())  # elsewhere nothing is asked, and the parent is there: no exit
    monkeypatch.undo()
    monkeypatch.setattr(ctypes, "CDLL", lambda _: (_ for _ in ()).throw(OSError("no libc")))
    scale._die_with(os.getppid())  # no libc to ask: the run goes on without


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait(30)
    return process.pid


def workers_of(pid: int) -> list[int]:
    """The pool processes of afetch `pid` (Linux /proc), forked or spawned, not
    multiprocessing's resource tracker."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_a_run_whose_worker_is_killed_ends_with_every_record(
    hosts: LoopbackHosts, tmp_path: Path
) -> None:
    """The whole command, as a user meets it: a worker killed mid-run (out of memory, say),
    chunks of records larger than a pipe holds, and afetch must still end, every record once.
    It wrote them all and then never exited: its exit waited on the broken pool's survivor."""
    port = hosts.serve(delayed(response(), 0.05))
    lines = [f"127.0.0.1:{port}/{i}/{'x' * 2000}" for i in range(600)]
    list_file, out = tmp_path / "hosts.txt", tmp_path / "out.jsonl"
    list_file.write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "fetcher", "--workers", "2", "-c", "20", "-q"]
    with (tmp_path / "stderr").open("wb") as err:  # not a pipe: a stuck worker would hold it
        process = subprocess.Popen(
            [*argv, "-l", str(list_file), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_for_records(out, 1)
        workers = workers_of(process.pid)
        assert workers, "no worker process found"
        os.kill(workers[0], signal.SIGKILL)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError("afetch still running 60 s after its worker died") from None
        assert process.returncode == 0, (tmp_path / "stderr").read_text()
        assert gone(process.pid, 10), "a worker outlived the run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert Counter(str(r["input"]) for r in records(out)) == Counter(lines)


def test_shard_runs_cover_the_input_exactly_once(hosts: LoopbackHosts, tmp_path: Path) -> None:
    port = hosts.serve(replies(response()))
    names = [f"127.0.0.{i}" for i in range(1, 13)]
    lines = [f"http://{name}:{port}/{i}" for name in names for i in range(3)] + ["not a target"]
    list_file = tmp_path / "hosts.txt"
    list_file.write_text("\n".join(lines) + "\n")
    shares = []
    for k in (1, 2, 3):
        result = CliRunner().invoke(afetch, ["--shard", f"{k}/3", "--json", "-l", str(list_file)])
        assert result.exit_code in (0, 1), result.stderr
        shares.append([json.loads(line) for line in result.stdout.splitlines()])
    assert Counter(str(r["input"]) for share in shares for r in share) == Counter(lines)
    for share in shares:  # a host's targets stay together
        assert (
            len(
                {r["host"] for r in share}
                & {r["host"] for s in shares if s is not share for r in s}
            )
            == 0
        )


def test_cluster_local_from_the_command_line(hosts: LoopbackHosts) -> None:
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    port = hosts.serve(replies(response()))
    lines = "".join(f"127.0.0.1:{port}/{i}\n" for i in range(50))
    done = subprocess.run(
        [sys.executable, "-m", "fetcher", "--cluster", "local:2", "--json", "--stats"],
        input=lines.encode(),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 50
    # Only afetch's own summary on stderr: none of distributed's log lines.
    assert done.stderr.decode().startswith("afetch: 50 targets"), done.stderr


def test_a_chunk_leaves_no_cycles_behind(
    hosts: LoopbackHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker runs chunk after chunk: each one's loop, backend and engine must be freed when
    it ends, not when the (raised) GC threshold is next reached."""
    import gc

    monkeypatch.setattr(scale, "_tuned", True)  # as in a worker (this process is pytest's)
    port = hosts.serve(replies(response()))
    config = make_config(concurrency=4)
    scale.run_chunk(config, [f"127.0.0.1:{port}/{i}" for i in range(20)])
    assert gc.collect() < 50


def test_a_chunk_shows_what_one_process_shows(hosts: LoopbackHosts) -> None:
    """--min-grade and --cert-expires-within hold in a chunk as in the one-process run: an
    audited plain-http host (graded below A+) is shown, a record without a certificate is not;
    the -o file gets both."""
    port = hosts.serve(replies(response()))
    url = f"http://127.0.0.1:{port}/"
    limits = make_config(concurrency=4).limits
    audit = Request(audit=True)
    graded = Config(request=audit, limits=limits, output=replace(JSONL, min_grade="A+"))
    expiring = Config(limits=limits, output=replace(JSONL, cert_expires_within=30))
    for config, shown in ((graded, 1), (expiring, 0)):
        chunk = scale.run_chunk(config, [url], file=True)
        assert (chunk.stdout.count(b"\n"), chunk.file.count(b"\n")) == (shown, 1)
        assert (chunk.tally.ok, chunk.tally.filtered) == (1, 1 - shown)


def test_only_a_local_clusters_workers_get_the_tuned_collector(
    hosts: LoopbackHosts, dask_client: Any
) -> None:
    """A worker of a cluster started for the run is tuned as --workers' are; one of a cluster
    afetch does not own keeps its collector as it was."""
    import gc

    port = hosts.serve(replies(response()))
    config = Config(limits=make_config(concurrency=4).limits, output=JSONL)
    lines = [f"127.0.0.1:{port}/{i}" for i in range(8)]

    def thresholds() -> set[int]:
        return {young for young, *_ in dask_client.run(gc.get_threshold).values()}

    assert thresholds() != {runner.GC_YOUNG_THRESHOLD}  # nothing tuned them yet
    fan(config, lines, scale.dask_pool(dask_client), lambda: None)
    assert runner.GC_YOUNG_THRESHOLD not in thresholds()
    fan(config, lines * 2, scale.dask_pool(dask_client, owned=True), lambda: None)
    assert runner.GC_YOUNG_THRESHOLD in thresholds()


class AlwaysBrokenPool(CountingPool):
    """A pool whose workers die at every chunk (killed by the OOM killer each time, say)."""

    def submit(self, fn: Callable[..., scale.ChunkResult], /, *args: Any, **kwargs: Any) -> Any:
        self.submits = getattr(self, "submits", 0) + 1
        raise cf.BrokenExecutor("A child process terminated abruptly")


def test_workers_that_keep_dying_fail_the_run_not_afetch(
    hosts: LoopbackHosts, tmp_path: Path
) -> None:
    """Workers killed at every chunk ended the run as afetch's bug: "internal error:
    WorkerDied", exit 70. It is the workers' failure: one line that says so, exit 69."""
    port = hosts.serve(replies(response()))
    config = Config(limits=make_config(concurrency=4).limits, output=JSONL)
    writer = RecordWriter(Format(format_jsonl), stdout=io.BytesIO())
    pool = AlwaysBrokenPool(2)
    errors = io.StringIO()
    previous, sys.stderr = sys.stderr, errors
    try:
        outcome = runner.run(config, [f"127.0.0.1:{port}/"], writer, pool=pool)
    finally:
        sys.stderr = previous
    assert isinstance(outcome.workers_error, scale.WorkersFailed)
    assert runner.exit_code(outcome) == 69
    assert pool.submits == scale.MAX_BREAKS + 1
    [line] = errors.getvalue().splitlines()
    assert line.startswith("afetch: error: worker processes died 4 times in a row"), line


# A `dask worker --preload` module: the worker runs, but afetch cannot be imported in it.
NO_AFETCH = "import sys\nsys.modules['fetcher'] = None\n"
# One whose afetch is of another version.
OTHER_AFETCH = "import fetcher.version\nfetcher.version.__version__ = '0.0.1'\n"


# A `dask worker --preload` module that changes nothing: a worker with this afetch.
SAME_AFETCH = "# this afetch, as installed\n"


@dataclass
class Scheduled:
    """What scheduler() started: its address, and the processes, to kill one mid-run."""

    address: str
    scheduler: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes] | None = None


@contextlib.contextmanager
def scheduler(
    tmp_path: Path, preload: str | None, env: dict[str, str] | None = None
) -> Iterator[Scheduled]:
    """A `dask scheduler` and, given a preload module's text, one `dask worker` running it, as
    processes of their own on loopback (each its own session); `env`: more of the scheduler's
    environment (Dask configuration)."""
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    bin_dir = Path(sys.executable).parent
    info = tmp_path / "scheduler.json"
    logs = contextlib.ExitStack()
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
    started = [
        subprocess.Popen(
            [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0"]
            + ["--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)],
            stderr=logs.enter_context((tmp_path / "scheduler.log").open("wb")),
            start_new_session=True,
            env={**os.environ, **(env or {})},
            **quiet,
        )
    ]
    try:
        end = time.monotonic() + 60.0  # wide: importing distributed takes a second or two
        while not (info.exists() and info.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.05)
        address = json.loads(info.read_text())["address"]
        if preload is not None:
            module = tmp_path / "preload.py"
            module.write_text(preload)
            started.append(
                subprocess.Popen(
                    [str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-nanny"]
                    + ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
                    + ["--preload", str(module)],
                    stderr=logs.enter_context((tmp_path / "worker.log").open("wb")),
                    cwd=tmp_path,
                    start_new_session=True,
                    **quiet,
                )
            )
        yield Scheduled(address, *started)
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        logs.close()


@pytest.mark.parametrize(
    ("preload", "says"),
    [(NO_AFETCH, "cannot import afetch (ModuleNotFoundError"), (OTHER_AFETCH, "has afetch 0.0.1")],
)
def test_a_cluster_whose_worker_cannot_run_afetch_is_refused_at_once(
    hosts: LoopbackHosts, tmp_path: Path, preload: str, says: str
) -> None:
    """A worker without afetch cannot even read a chunk's task: it ended, the chunk waited for
    another worker, and afetch waited for good. Each worker is now asked first: one line naming
    it, exit 69, nothing fetched."""
    port = hosts.serve(replies(response()))
    with scheduler(tmp_path, preload) as scheduled:
        address = scheduled.address
        out = tmp_path / "out.jsonl"
        argv = [sys.executable, "-m", "fetcher", "--cluster", address, "-o", str(out)]
        try:
            done = subprocess.run(
                [*argv, f"127.0.0.1:{port}/"], capture_output=True, text=True, timeout=90
            )
        except subprocess.TimeoutExpired:
            raise AssertionError("afetch still running after 90 s") from None
    assert done.returncode == 69, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"afetch: error: --cluster {address}: tcp://127.0.0.1:"), line
    assert says in line and "this is afetch" in line
    assert not out.exists() or out.read_text() == ""


def test_a_cluster_without_a_worker_is_refused_after_a_wait(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    with scheduler(tmp_path, None) as scheduled, distributed.Client(scheduled.address) as client:
        address = scheduled.address
        started = time.monotonic()
        with pytest.raises(scale.WorkersFailed, match="the scheduler has no worker"):
            scale.check_workers(client, address, wait_s=0.5)
        assert time.monotonic() - started < 30.0  # it gave up, and did not wait for good


def test_the_workers_of_a_cluster_with_afetch_pass_the_check(dask_client: Any) -> None:
    scale.check_workers(dask_client, "local", wait_s=30.0)


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_run_whose_scheduler_is_lost_ends_with_one_line(
    hosts: LoopbackHosts, tmp_path: Path
) -> None:
    """The scheduler killed mid-run: Dask cancels every future of the run at once, and the
    cancellation reached the user as a Python traceback. Now one line that says so, exit 69,
    the records of the chunks back written, each once."""
    port = hosts.serve(delayed(response(), 0.2))
    lines = [f"127.0.0.1:{port}/{i}" for i in range(1000)]  # chunks of 200 to 300, 2-3 s each
    list_file, out, err = tmp_path / "hosts.txt", tmp_path / "out.jsonl", tmp_path / "stderr"
    list_file.write_text("\n".join(lines) + "\n")
    with scheduler(tmp_path, SAME_AFETCH) as scheduled:
        argv = [sys.executable, "-m", "fetcher", "--cluster", scheduled.address, "-c", "20"]
        with err.open("wb") as stderr:
            process = subprocess.Popen(
                [*argv, "-q", "-l", str(list_file), "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            wait_for_records(out, 1, deadline=90)  # wide: the worker imports distributed first
            os.killpg(scheduled.scheduler.pid, signal.SIGKILL)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                raise AssertionError("afetch still running 60 s after its scheduler died") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 69, err.read_text()
    [line] = err.read_text().splitlines()
    assert line.startswith(f"afetch: error: --cluster {scheduled.address}: the scheduler was lost")
    assert line.endswith("--resume -o FILE goes on from them"), line
    got = Counter(str(r["input"]) for r in records(out))
    assert got and set(got) < set(lines) and max(got.values()) == 1


def run_until_failed(
    config: Config, lines: list[str], pool: scale.Pool, kill: Callable[[], None]
) -> BaseException:
    """What fan() raised, within 60 s (a daemon thread: a run that waits for good fails the
    test instead of holding pytest)."""
    raised: list[BaseException] = []

    def go() -> None:
        try:
            fan(config, lines, pool, kill)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the run still waits, 60 s on"
    [exc] = raised
    return exc


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
@pytest.mark.parametrize(
    ("scheduler_env", "says"),
    [
        pytest.param(
            {}, "the scheduler has had no worker for 1 s with chunks to run", id="none-left"
        ),
        pytest.param(
            {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
            "1 workers died running one chunk, the last tcp://127.0.0.1:",
            id="killed-worker",
        ),
    ],
)
def test_a_cluster_that_loses_its_worker_fails_the_run(
    hosts: LoopbackHosts, tmp_path: Path, scheduler_env: dict[str, str], says: str
) -> None:
    """The only worker killed mid-run: Dask holds its chunks until a worker comes, which none
    did, and the run waited for good; a scheduler that allows no failure fails the chunk with
    KilledWorker, which ended the run as afetch's bug (exit 70). Both are the workers'
    failure now, each said."""
    distributed = pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    port = hosts.serve(delayed(response(), 0.1))
    lines = [f"127.0.0.1:{port}/{i}" for i in range(200)]  # chunks of 16 to 64, 0.4 s and more each
    config = Config(limits=make_config(concurrency=4).limits, output=Output(format="jsonl"))
    with (
        scheduler(tmp_path, SAME_AFETCH, scheduler_env) as scheduled,
        distributed.Client(scheduled.address) as client,
    ):
        client.wait_for_workers(1, timeout=60)
        pool = scale.dask_pool(client, address=scheduled.address, no_worker_s=1.0)
        pool.start()
        worker = scheduled.worker
        assert worker is not None

        def kill() -> None:  # the first chunk is back: the next is out, mid-chunk
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)

        exc = run_until_failed(config, lines, pool, kill)
    assert isinstance(exc, scale.WorkersFailed), repr(exc)
    assert str(exc).startswith(f"--cluster {scheduled.address}: {says}"), str(exc)


class DroppingExecutor(cf.ThreadPoolExecutor):
    """Runs chunks on threads, but drops the second it is given: its future never runs, and
    drop() cancels it, as Dask cancels every future when its scheduler is lost."""

    def __init__(self) -> None:
        super().__init__(2)
        self.given = 0
        self.dropped: cf.Future[Any] = cf.Future()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        self.given += 1
        return self.dropped if self.given == 2 else super().submit(fn, *args, **kwargs)

    def drop(self) -> None:
        self.dropped.cancel()


def test_a_chunk_the_executor_drops_fails_the_run_and_keeps_what_came_back(
    hosts: LoopbackHosts,
) -> None:
    """A cancelled chunk's future was taken for a Ctrl-C of the run: CancelledError out of
    run(), and a traceback. It is the workers' failure; and under --order input the chunks
    back after the dropped one, held for their turn, are written too (not lost with it)."""
    port = hosts.serve(replies(response()))
    lines = [f"127.0.0.1:{port}/{i}" for i in range(40)]  # 10 chunks of 4
    config = Config(
        limits=make_config(concurrency=2).limits, output=Output(format="jsonl"), order="input"
    )
    out = io.BytesIO()
    writer = RecordWriter(Format(format_jsonl), stdout=out)
    executor = DroppingExecutor()
    pool = scale.ExecutorPool(executor, slots=2)
    back = 0

    def counted() -> None:
        nonlocal back
        back += 1
        if back == 9:  # every chunk but the dropped one
            executor.drop()

    async def go() -> None:
        await scale.FanOut(config, pool, writer, Tally(), on_chunk=counted).run(lines)

    try:
        with pytest.raises(scale.WorkersFailed, match="^the executor dropped a chunk; the rec"):
            asyncio.run(go())
    finally:
        pool.close()
        writer.close()
    written = [json.loads(line)["input"] for line in out.getvalue().splitlines()]
    assert written == lines[:4] + lines[8:]


def test_a_client_that_gave_up_on_its_scheduler_fails_the_run(dask_client: Any) -> None:
    """A Client closes itself some 10 s after it lost its scheduler, and then refuses chunks
    (ClosedClientError): a slow input's next chunk ended the run as afetch's bug, exit 70."""
    distributed = pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    client = distributed.Client(dask_client.scheduler.address)
    pool = scale.dask_pool(client, address="tcp://gone:8786")
    client.close()
    with pytest.raises(scale.WorkersFailed, match="^--cluster tcp://gone:8786: the scheduler was"):
        pool.submit(pow, 2, 3)
    pool.close()


class NoWorkerClient:
    """A distributed.Client's few calls DaskPool makes, of a cluster with 2 threads and then no
    worker at all; its chunks never run."""

    status = "running"

    def nthreads(self) -> dict[str, int]:
        return {"tcp://a": 1, "tcp://b": 1}

    def get_executor(self, pure: bool) -> cf.Executor:
        return NeverExecutor()

    def wait_for_workers(self, n_workers: int, timeout: float) -> None:
        time.sleep(timeout)
        raise TimeoutError("no worker")


class NeverExecutor(cf.Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return cf.Future()


def test_no_worker_fails_the_run_only_with_chunks_out_for_long() -> None:
    """A cluster without a worker while no chunk was out (a slow input, workers restarting)
    was a verdict kept for good: the next chunk failed the run at its first check. Now the
    wait counts from the later of the last worker seen and the chunks going out."""
    pytest.importorskip("distributed", reason="afetch[dask] is not installed")
    pool = scale.DaskPool(NoWorkerClient(), no_worker_s=0.3)
    pool.watch_s = 0.05
    pool.start()
    try:
        time.sleep(0.6)  # no worker, no chunk out
        pool.check()
        pool.submit(pow, 2, 3)
        pool.check()  # chunks just out
        time.sleep(0.6)
        with pytest.raises(scale.WorkersFailed, match="has had no worker for 0.3 s"):
            pool.check()
    finally:
        pool.close()


class LostSchedulerClient(NoWorkerClient):
    def wait_for_workers(self, n_workers: int, timeout: float) -> None:
        raise OSError("Timed out trying to connect to tcp://127.0.0.1:1 after 10 s")


def test_a_scheduler_lost_before_the_run_fails_it_in_one_line() -> None:
    """The scheduler killed while afetch waited for its first worker: Dask's OSError ("Timed
    out trying to connect") reached the user as a traceback, exit 1."""
    with pytest.raises(scale.WorkersFailed, match="^--cluster tcp://h:1: the scheduler was lost"):
        scale.check_workers(LostSchedulerClient(), "tcp://h:1")
