"""Run one client as a child process: wall time, peak RSS, a hard timeout, nothing left behind.

The client runs under ``launcher.py``, which forks it from a tiny interpreter, reaps it with
``os.wait4`` and records its wall time and ``ru_maxrss`` (see launcher.py for why the detour). The
launcher runs in its own process group; a timer thread kills that group if it overruns, and the
launcher is first waited for with ``WNOWAIT`` so the timer can never signal a recycled pid.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Enough to see why a child failed without flooding the report.
STDERR_TAIL_BYTES = 2000
LAUNCHER = Path(__file__).with_name("launcher.py")


@dataclass(frozen=True)
class ChildRun:
    """What one child process did: how long, how much memory, how it ended."""

    argv: tuple[str, ...]
    wall_s: float
    maxrss_kib: int
    returncode: int | None
    timed_out: bool
    stderr_tail: str
    # user + system CPU of the client: far steadier than wall time on a busy machine
    cpu_s: float = 0.0

    @property
    def peak_rss_mb(self) -> float:
        # ru_maxrss is in KiB on Linux.
        return self.maxrss_kib / 1024

    @property
    def clean_exit(self) -> bool:
        return not self.timed_out and self.returncode == 0


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; children inherit it. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _feed(pipe: IO[bytes], chunks: Iterable[bytes]) -> None:
    """Write chunks into the child's stdin; a child that stops reading ends the feed quietly."""
    try:
        for chunk in chunks:
            pipe.write(chunk)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except (BrokenPipeError, OSError):
            pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_child(
    argv: Sequence[str],
    *,
    timeout_s: float,
    stdin: Iterable[bytes] | None = None,
    stdout: Path | None = None,
    workdir: Path,
) -> ChildRun:
    """Run ``argv`` to completion (or kill it at ``timeout_s``) and measure it.

    ``stdin`` is streamed from a thread, so a million targets never sit in a list here.
    ``stdout`` is a file to keep (``None`` discards it). Wall time runs from the launcher's fork
    to the client's exit, so it covers the client's own start-up: that is what a user waits for.
    """
    stderr_path = workdir / "child.stderr"
    result_path = workdir / "child.result"
    launch = [sys.executable, "-S", "-I", str(LAUNCHER), str(result_path), *argv]
    out_target = stdout.open("wb") if stdout is not None else open(os.devnull, "wb")
    with out_target as out, stderr_path.open("w+b") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            launch,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: one killpg ends everything
        )
        feeder: threading.Thread | None = None
        if stdin is not None and proc.stdin is not None:
            feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
            feeder.start()

        lock = threading.Lock()
        exited = False
        timed_out = False

        def on_timeout() -> None:
            nonlocal timed_out
            with lock:
                if not exited:
                    timed_out = True
                    _kill_group(proc.pid)

        timer = threading.Timer(timeout_s, on_timeout)
        timer.daemon = True
        timer.start()
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = time.perf_counter() - started
            with lock:
                exited = True
            timer.cancel()
            # Still a zombie, so its pid (and group id) cannot be recycled yet: end anything
            # the client left behind in the group, then reap the launcher.
            _kill_group(proc.pid)
            proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        if feeder is not None:
            feeder.join(timeout=5)
        err.seek(0, os.SEEK_END)
        size = err.tell()
        err.seek(max(0, size - STDERR_TAIL_BYTES))
        tail = err.read().decode("utf-8", "replace")
    maxrss_kib = 0
    cpu = 0.0
    returncode: int | None = None if timed_out else proc.returncode
    if not timed_out:
        try:
            wall_text, rss_text, code_text, cpu_text = result_path.read_text().split()
            wall, maxrss_kib, returncode = float(wall_text), int(rss_text), int(code_text)
            cpu = float(cpu_text)
        except (OSError, ValueError):
            tail += "\nbench: the launcher recorded no result"
    return ChildRun(
        argv=tuple(argv),
        wall_s=wall,
        maxrss_kib=maxrss_kib,
        cpu_s=cpu,
        returncode=returncode,
        timed_out=timed_out,
        stderr_tail=tail,
    )


def rss_floor_kib(workdir: Path) -> int:
    """The peak RSS the launcher passes on to any child: what ``true`` reports."""
    return run_child(["true"], timeout_s=10, workdir=workdir).maxrss_kib
