"""Signals, torn files and --resume, against a real afetch process and a slow loopback host."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from fetcher.loopback import (
    FOREVER,
    LoopbackHosts,
    Script,
    delayed,
    read_request,
    response,
    silent,
)

SLOW = 0.3  # seconds each answer takes
COUNT = 300


@pytest.fixture(scope="module")
def slow_port(hosts: LoopbackHosts) -> int:
    return hosts.serve(delayed(response("200 OK"), SLOW))


class Gate:
    """A host that answers the first `free` requests, then holds every other one until the gate
    opens: a run against it cannot finish before the test has interrupted it, however slowly
    a loaded machine runs the test."""

    def __init__(self, hosts: LoopbackHosts, free: int) -> None:
        self.open = threading.Event()
        self.free = free
        self.port = hosts.serve(self.script)

    async def script(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        self.free -= 1
        deadline = time.monotonic() + FOREVER
        while self.free < 0 and not self.open.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        writer.write(response("200 OK"))
        await writer.drain()


def targets(port: int) -> list[str]:
    return [f"127.0.0.1:{port}/item/{i}" for i in range(COUNT)]


def start(list_file: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start afetch with SIGINT at its default, whatever this test process inherited.

    A shell starts background jobs with SIGINT ignored, an ignored signal stays ignored
    across fork and exec, and a program that starts with SIGINT ignored rightly keeps ignoring
    it (nohup semantics; afetch does too). A test run launched that way must not pass the
    ignore on: with a handler installed here for the moment of the fork, the child starts
    with the default disposition instead.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "fetcher", "-c", "20", "-l", str(list_file), "-o", str(out)]
            + list(extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def finish(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Wait for the process to exit and return its stderr; if it does not exit in time, kill
    it (no orphan outlives the test) and fail with what it printed."""
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # A process of its own group (start_new_session) may have left workers holding the
        # stderr pipe: they go too, or reading it to its end would wait for them for good.
        # Asked first: kill() reaps a process that exited already, and its pid with it.
        leader = os.getpgid(process.pid) == process.pid
        process.kill()
        if leader:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"afetch still running after {timeout} s; stderr: {err!r}") from None
    return err


def records(out: Path) -> list[dict[str, object]]:
    text = out.read_text()
    assert text == "" or text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


def wait_for_records(out: Path, at_least: int, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if out.exists() and out.read_bytes().count(b"\n") >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} records after {deadline} s")


@pytest.mark.parametrize(
    ("signum", "code"),
    [
        pytest.param(signal.SIGINT, 130, id="sigint"),
        pytest.param(signal.SIGTERM, 143, id="sigterm"),
    ],
)
def test_signal_then_resume_leaves_each_input_exactly_once(
    hosts: LoopbackHosts, tmp_path: Path, signum: int, code: int
) -> None:
    gate = Gate(hosts, free=20)
    lines = targets(gate.port)
    list_file = tmp_path / "hosts.txt"
    list_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"

    process = start(list_file, out)
    wait_for_records(out, 20)
    process.send_signal(signum)
    err = finish(process, 30)
    assert process.returncode == code, err
    assert b"Traceback" not in err
    first = records(out)
    assert 20 <= len(first) < COUNT
    assert all(not r["failed"] for r in first), "cancelled fetches must not be written as failures"

    gate.open.set()
    process = start(list_file, out, "--resume")
    err = finish(process, 60)
    assert process.returncode == 0, err
    final = Counter(str(r["input"]) for r in records(out))
    assert final == Counter(lines)


def test_second_ctrl_c_exits_at_once(hosts: LoopbackHosts, tmp_path: Path) -> None:
    gate = Gate(hosts, free=1)
    list_file = tmp_path / "hosts.txt"
    list_file.write_text("\n".join(targets(gate.port)) + "\n")
    out = tmp_path / "out.jsonl"
    process = start(list_file, out)
    wait_for_records(out, 1)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    err = finish(process, 30)
    assert process.returncode == 130
    assert b"Traceback" not in err
    records(out)  # whole lines only


def test_torn_last_line_is_repaired_and_its_target_fetched_again(
    slow_port: int, tmp_path: Path
) -> None:
    lines = targets(slow_port)[:5]
    list_file = tmp_path / "hosts.txt"
    list_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    done = json.dumps({"input": lines[0], "failed": False})
    out.write_text(done + "\n" + '{"input": "' + lines[1][:10])  # as left by kill -9
    process = start(list_file, out, "--resume")
    err = finish(process, 60)
    assert process.returncode == 0, err
    assert Counter(str(r["input"]) for r in records(out)) == Counter(lines)


def test_resume_needs_an_output_file() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fetcher", "--resume", "x"], capture_output=True, timeout=30
    )
    assert done.returncode == 2 and b"--resume needs -o FILE" in done.stderr


def test_low_open_file_limit_lowers_concurrency(tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    done = subprocess.run(
        [sys.executable, "-m", "fetcher", "-c", "1000", "bad host"],
        capture_output=True,
        timeout=30,
        preexec_fn=limit,  # noqa: PLW1509 - the child only
        env={**os.environ},
    )
    assert b"concurrency lowered from 1000 to 136" in done.stderr
    assert done.stderr.count(b"\n") == 1
    assert done.returncode == 1  # the run went on: one invalid-input record


# --- a signal at any moment of a run's life ------------------------------------------------

RUN = ("-q", "--json", "-c", "1", "-t", "0.3")  # one silent target: a run of about 0.3 s
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)
# Signals sent this long (seconds) after afetch took SIGTERM over, at the first line of
# fetcher.process: its start-up (click, the engine, httpx and uvloop imported: 0.15 s or more),
# the run, and its end. AT_ONCE runs at a time keep the test near 10 s on a loaded machine.
DELAYS = (0.0, 0.003, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.22, 0.3, 0.45)
# ...and this long after the run's one record reached stdout: the writer is closed and the
# rest of the exit (the status, the interpreter's own teardown) is under way.
AFTER_RECORD = (0.0, 0.002, 0.005, 0.01)
SECOND = 0.02  # the second signal of a pair, this long after the first
AT_ONCE = 4  # runs at a time
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def sigterm_taken_over(pid: int, deadline: float = 30) -> None:
    """Wait until the process catches or ignores SIGTERM (Linux /proc), or has exited.

    Before that, in the interpreter's own start (site, runpy, the fetcher package: 15 ms at
    best on a 2-core machine, 80 ms or more when it is loaded), no handler of ours can exist: SIGINT
    there is Python's KeyboardInterrupt (a traceback, in site or an import), SIGTERM death.
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status)
        except FileNotFoundError:
            return
        masks = int(fields["SigCgt"], 16) | int(fields["SigIgn"], 16)
        if fields["State"].split()[0] == "Z" or masks & SIGTERM_BIT:
            return
        time.sleep(0.0005)


def noting(arrived: threading.Event) -> Script:
    """A silent host that notes when afetch's connection arrives: its start-up is over."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrived.set()
        await read_request(reader)
        await asyncio.wait_for(reader.read(), FOREVER)

    return script


class SignalledRun:
    """One afetch run and the signals it gets: `delay` after afetch took SIGTERM over, or
    after its record arrived on stdout."""

    def __init__(
        self, hosts: LoopbackHosts, signals: tuple[int, ...], delay: float, after_record: bool
    ) -> None:
        self.signals, self.delay, self.after_record = signals, delay, after_record
        self.arrived = threading.Event()
        self.in_start_up = False
        self.out = self.err = b""
        port = hosts.serve(noting(self.arrived))
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # see start()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fetcher", *RUN, f"127.0.0.1:{port}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        self.thread = threading.Thread(target=self.drive)
        self.thread.start()

    def drive(self) -> None:
        process = self.process
        assert process.stdout is not None
        first = b""
        if self.after_record:  # one unbuffered byte: communicate() reads the descriptor
            first = os.read(process.stdout.fileno(), 1)
        else:
            sigterm_taken_over(process.pid)
        time.sleep(self.delay)
        self.in_start_up = not self.arrived.is_set()
        for n, signum in enumerate(self.signals):
            if n:
                time.sleep(SECOND)
            process.send_signal(signum)  # does nothing once the process has been waited for
        try:
            out, self.err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, self.err = process.communicate()
            self.err += b"\n(still running after 30 s: killed)"
        self.out = first + out

    def problem(self) -> str | None:
        """What is wrong with how the run ended, if anything."""
        self.thread.join(timeout=60)
        code, finished = self.process.returncode, b'"failed":true' in self.out
        # Nothing on stderr but, once a run is under way, the one line saying what it left.
        lines = self.err.splitlines()
        if len(lines) > 1 or (lines and not lines[0].startswith(b"afetch: interrupted: ")):
            return f"stderr {self.err[-300:]!r}"
        if code == STATUS[self.signals[0]]:
            return None
        if code == 1 and finished:  # the run had ended before the signal came
            return None
        return f"exit status {code}, record written: {finished}"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_signal_at_any_moment_exits_130_or_143_without_a_traceback(
    hosts: LoopbackHosts,
) -> None:
    kinds = [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)]
    plans = [(kinds[(i + k) % 3], delay, False) for i, delay in enumerate(DELAYS) for k in (0, 1)]
    plans += [(kind, offset, True) for offset in AFTER_RECORD for kind in kinds[:2]]
    problems, start_up = [], 0
    for at in range(0, len(plans), AT_ONCE):
        runs = [SignalledRun(hosts, *plan) for plan in plans[at : at + AT_ONCE]]
        for run in runs:
            problem = run.problem()
            start_up += run.in_start_up and not run.after_record
            if problem is not None:
                names = "+".join(signal.Signals(s).name for s in run.signals)
                where = "after its record" if run.after_record else "after SIGTERM was ours"
                problems.append(f"{names} {run.delay * 1000:g} ms {where}: {problem}")
    assert problems == []
    assert start_up >= 4, "too few signals came during start-up to tell"


def test_a_signal_ignored_at_start_stays_ignored(hosts: LoopbackHosts) -> None:
    port = hosts.serve(silent())
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "fetcher", *RUN, f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out = process.stdout.read() if process.stdout else b""
    err = finish(process, 30)
    assert process.returncode == 1 and b'"failed":true' in out, err  # the run went on to its end


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("source", ["open-pipe", "fifo"])
def test_ctrl_c_while_waiting_for_input_exits_at_once(tmp_path: Path, source: str) -> None:
    """Input that never comes (a pipe whose writer stays open, a FIFO no writer opens): Ctrl-C
    still ends the run. A read on the loop's executor held the process until input came."""
    fifo = tmp_path / "targets.fifo"
    read_end, write_end = os.pipe()
    if source == "fifo":
        os.mkfifo(fifo)
        args = ["-q", "-l", str(fifo)]
    else:
        args = ["-q"]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "fetcher", *args],
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        os.close(read_end)
    try:
        sigterm_taken_over(process.pid)  # the run is under way, waiting for its first line
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        err = finish(process, timeout=20)
    finally:
        os.close(write_end)
    assert process.returncode == 130, err
    assert err in (b"", b"afetch: interrupted: 0 records written\n")  # before or in the run
