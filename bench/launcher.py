"""Run one command and record its wall time and peak RSS: ``launcher.py RESULT_FILE ARGV...``.

Why a launcher at all: on Linux a child's ``ru_maxrss`` starts from the resident size of the
process it was forked from (exec keeps the old address space's high-water mark). Forked straight
from the benchmark, every client would report at least the benchmark's own ~35 MB. This launcher
is started with ``python -S -I`` and imports nothing before it forks, so the floor it passes on is
a few MB; the benchmark measures that floor once (``true``) and reports readings at the floor as
"<= floor".

Writes ``wall_seconds maxrss_kib exit_code cpu_seconds`` to RESULT_FILE and exits with the
command's code. cpu_seconds is user + system time of the command and of every descendant: on
Linux the launcher is their subreaper, so a process the command left to outlive it (the
forkserver of a --cluster local:N run, which waited for the Dask workers it forked) is reaped
here once it exits, its time counted. Wall time ends when the command itself exits.
"""

import os
import sys
import time

# How long the launcher waits, after the command exited, for the processes it left behind.
ORPHANS_WAIT_S = 10.0


def _become_subreaper() -> None:
    """Orphaned descendants become this process's children (Linux 3.4+), so their CPU time is
    reaped here rather than by init. ctypes is imported in the launcher only, after the fork."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _reap_orphans() -> tuple[float, int]:
    """CPU seconds of the descendants that outlived the command, and how many still run after
    ORPHANS_WAIT_S."""
    cpu, end = 0.0, time.monotonic() + ORPHANS_WAIT_S
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu, 0
        if pid:
            cpu += usage.ru_utime + usage.ru_stime
        elif time.monotonic() > end:
            return cpu, _children()
        else:
            time.sleep(0.01)


def _children() -> int:
    """This process's children still running (Linux /proc; 1 where it cannot be read)."""
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as children:
            return len(children.read().split())
    except OSError:
        return 1


def main() -> int:
    result_file, argv = sys.argv[1], sys.argv[2:]
    go_r, go_w = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.read(go_r, 1)  # the launcher is the subreaper before the command can leave anyone
        os.close(go_r)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"launcher: cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
    os.close(go_r)
    _become_subreaper()
    os.write(go_w, b"x")
    os.close(go_w)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    orphans_cpu, left = _reap_orphans()
    if left:
        os.write(2, f"launcher: {left} processes of {argv[0]} still run\n".encode())
    with open(result_file, "w") as result:
        cpu = usage.ru_utime + usage.ru_stime + orphans_cpu
        result.write(f"{wall:.6f} {usage.ru_maxrss} {code} {cpu:.6f}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
