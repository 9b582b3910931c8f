"""Run one command and record its wall time and peak RSS: ``launcher.py RESULT_FILE ARGV...``.

Why a launcher at all: on Linux a child's ``ru_maxrss`` starts from the resident size of the
process it was forked from (exec keeps the old address space's high-water mark). Forked straight
from the benchmark, every client would report at least the benchmark's own ~35 MB. This launcher
is started with ``python -S -I`` and imports nothing, so the floor it passes on is a few MB; the
benchmark measures that floor once (``true``) and reports readings at the floor as "<= floor".

Writes ``wall_seconds maxrss_kib exit_code cpu_seconds`` to RESULT_FILE and exits with the
command's code. cpu_seconds is user + system time of the command and of every descendant it
waited for (a worker pool's processes included).
"""

import os
import sys
import time


def main() -> int:
    result_file, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"launcher: cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(result_file, "w") as result:
        cpu = usage.ru_utime + usage.ru_stime
        result.write(f"{wall:.6f} {usage.ru_maxrss} {code} {cpu:.6f}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
