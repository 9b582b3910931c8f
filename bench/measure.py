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
from collections.abc import Callable, Iterable, Sequence
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
    cpu_s: float = 0.0  # user + system, the child's and its waited-for descendants'
    tree_peak_rss_kib: int = 0  # with sample_tree: the largest sum of RSS over all its processes

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
    sample_tree: bool = False,
) -> ChildRun:
    """Run ``argv`` to completion (or kill it at ``timeout_s``) and measure it.

    ``stdin`` is streamed from a thread, so a million targets never sit in a list here.
    ``stdout`` is a file to keep (``None`` discards it). Wall time runs from the launcher's fork
    to the client's exit, so it covers the client's own start-up: that is what a user waits for.
    ``sample_tree``: every TREE_SAMPLE_S, add up the RSS of every process under the child (a
    worker pool's too) and keep the largest sum.
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

        sampler: threading.Thread | None = None
        tree_peak = [0]
        if sample_tree:
            sampler = threading.Thread(
                target=_sample_tree, args=(proc.pid, tree_peak, lambda: exited), daemon=True
            )
            sampler.start()

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
        if sampler is not None:
            sampler.join(timeout=5)
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
        tree_peak_rss_kib=tree_peak[0],
    )


# How often the process tree's RSS is summed: often enough to catch a peak that lasts a second.
TREE_SAMPLE_S = 0.2


def tree_rss_kib(root: int) -> int:
    """The RSS of `root` and of every process under it, summed (Linux /proc), in KiB. The
    launcher's own few MB are left out: it is not the client."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    under = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in under and pid not in under:
                under.add(pid)
                grew = True
    total = 0
    for pid in under - {root}:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


def _sample_tree(root: int, peak: list[int], done: Callable[[], bool]) -> None:
    while not done():
        peak[0] = max(peak[0], tree_rss_kib(root))
        time.sleep(TREE_SAMPLE_S)


def rss_floor_kib(workdir: Path) -> int:
    """The peak RSS the launcher passes on to any child: what ``true`` reports."""
    return run_child(["true"], timeout_s=10, workdir=workdir).maxrss_kib
