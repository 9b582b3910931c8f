"""Signals, torn files and --resume, against a real afetch process and a slow loopback host."""

from __future__ import annotations

import asyncio
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

from fetcher.loopback import FOREVER, LoopbackHosts, delayed, read_request, response
from fetcher.resume import Recorded, repair

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
        process.kill()
        _, err = process.communicate()
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


def test_repair_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    assert repair(str(path)) == 0  # no file yet
    path.write_bytes(b'{"input": "a"}\n{"input": "a"}\nnot json\n{"inp')
    assert repair(str(path)) == 5
    assert path.read_bytes().endswith(b"not json\n")
    assert len(Recorded.load(str(path))) == 2
    path.write_bytes(b"x" * 100_000)  # one torn line and nothing else
    assert repair(str(path)) == 100_000 and path.read_bytes() == b""


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
