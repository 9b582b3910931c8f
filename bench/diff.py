"""`afetch diff` on big runs: wall time and peak memory for N records per side.

    .venv/bin/python bench/diff.py [--records 1000000] [--changed 0.02] [--keep DIR [--reuse]]

Writes two synthetic runs into a temporary directory (records shaped as afetch writes them:
15 headers, volatile ones included, about 1 KB each as real ones are), the second in another
order (a real run's completion order differs) with a fraction of targets changed, appeared and
disappeared. Then it runs `python -m fetcher.diff --stats` on them as a child process and
reports its wall time, its CPU time, and its peak memory twice: the largest RSS one process
reached (getrusage of children) and the largest sum over the process and the child it forks
(sampled every 50 ms from /proc). It checks the counts printed against the ones planted and
says whether the issue's bound held: a million records per side in at most 60 s and 400 MB.
Exit 1 if a count is wrong or a bound is exceeded.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

TIME_BOUND_S = 60.0
MEMORY_BOUND_MB = 400.0
STATS = re.compile(
    rb"(\d+) old, (\d+) new records: (\d+) changed, (\d+) appeared, (\d+) disappeared, "
    rb"(\d+) unchanged"
)


def tree_rss_kib(pid: int) -> int:
    """The resident memory of a process and its descendants, now (Linux /proc; 0 elsewhere)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:  # gone already, or not Linux
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        pending.extend(int(child) for child in children.split())
    return total


def make_record(n: int, version: int, change: str) -> dict[str, Any]:
    """Target n as run `version` (0 old, 1 new) saw it; `change` plants one kind of change."""
    host = f"host{n}.example"
    headers: dict[str, list[str]] = {
        "server": ["nginx/1.25.3"],
        "date": [f"Wed, 02 Dec 2026 04:{version:02d}:{n % 60:02d} GMT"],
        "content-type": ["text/html; charset=utf-8"],
        "content-length": [str(5000 + (n * 7 + version) % 900)],
        "connection": ["close"],
        "cache-control": ["private, max-age=0"],
        "etag": [f'"{n:x}-{version}"'],
        "last-modified": ["Tue, 01 Dec 2026 12:00:00 GMT"],
        "strict-transport-security": ["max-age=31536000; includeSubDomains"],
        "x-frame-options": ["SAMEORIGIN"],
        "x-content-type-options": ["nosniff"],
        "x-request-id": [f"{n:08x}-{version:04x}-4a5b-9c8d-{n * 31 + version:012x}"],
        "cf-ray": [f"{n * 977 + version:016x}-AMS"],
        "set-cookie": [f"sid={n * 13 + version:x}; Path=/; HttpOnly; Secure; SameSite=Lax"],
        "vary": ["Accept-Encoding"],
    }
    status = 200
    if change == "status":
        status = 503
    elif change == "header":
        headers["server"] = ["nginx/1.27.0"]
    url = f"https://{host}/"
    record: dict[str, Any] = {
        "input": host, "url": url, "scheme": "https", "host": host, "port": 443, "path": "/",
        "host_ip": f"192.0.{n % 256}.{n // 256 % 256}", "method": "GET", "status_code": status,
        "reason": "OK", "http_version": "1.1", "headers": headers,
        "timings_ms": {"dns": 1.234, "connect": 12.345, "tls": 23.456, "ttfb": 45.678,
                       "total": 56.789},
        "failed": False, "error": None, "timestamp": "2026-12-02T04:00:00.000Z",
        "backend": "raw", "redirects": [], "final_url": url,
    }  # fmt: skip
    if change == "failed":
        record.update(status_code=None, reason=None, http_version=None, headers={}, failed=True)
        record["error"] = {"kind": "timeout", "phase": "read", "message": "no response headers"}
    return record


def plan(n: int, every: int) -> str:
    """Which change target n gets: one in `every` of each kind."""
    slot = n % every
    return {0: "status", 1: "header", 2: "failed", 3: "gone", 4: "new"}.get(slot, "")


def generate(directory: Path, records: int, changed: float) -> tuple[Path, Path, dict[str, int]]:
    every = max(5, round(5 / changed)) if changed > 0 else records + 5
    counts = {"changed": 0, "appeared": 0, "disappeared": 0, "unchanged": 0}
    old_path, new_path = directory / "old.jsonl", directory / "new.jsonl"
    with open(old_path, "wb") as old:
        for n in range(records):
            if plan(n, every) != "new":
                old.write(orjson.dumps(make_record(n, 0, "")) + b"\n")
    # NEW in another order: n -> n * step mod records, a permutation when they are coprime.
    step = 7919
    while math.gcd(step, records) != 1:
        step += 2
    with open(new_path, "wb") as new:
        for i in range(records):
            n = i * step % records
            kind = plan(n, every)
            if kind == "gone":
                counts["disappeared"] += 1
                continue
            if kind == "new":
                counts["appeared"] += 1
            elif kind:
                counts["changed"] += 1
            else:
                counts["unchanged"] += 1
            new.write(orjson.dumps(make_record(n, 1, kind)) + b"\n")
    return old_path, new_path, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records per side")
    parser.add_argument("--changed", type=float, default=0.02, help="fraction of targets changed")
    parser.add_argument("--keep", help="write the files here and keep them")
    parser.add_argument("--reuse", action="store_true", help="with --keep: use the files there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="afetch-diff-bench-") as scratch:
        directory = Path(args.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        counts = directory / "planted.json"
        if args.reuse and counts.exists():
            old, new = directory / "old.jsonl", directory / "new.jsonl"
            planted = orjson.loads(counts.read_bytes())
        else:
            old, new, planted = generate(directory, args.records, args.changed)
            counts.write_bytes(orjson.dumps(planted))
        generated = time.perf_counter() - started
        sizes = old.stat().st_size + new.stat().st_size
        command = [sys.executable, "-m", "fetcher.diff", "--stats", str(old), str(new)]
        load = os.getloadavg()[0]  # a busy machine stretches wall time, not CPU time
        started = time.perf_counter()
        with open(os.devnull, "wb") as sink, tempfile.TemporaryFile() as errors:
            child = subprocess.Popen(command, stdout=sink, stderr=errors)
            tree_mb = 0.0
            while child.poll() is None and time.perf_counter() - started < 600:
                tree_mb = max(tree_mb, tree_rss_kib(child.pid) / 1024)
                time.sleep(0.05)
            if child.poll() is None:
                child.kill()
            returncode = child.wait()
            wall = time.perf_counter() - started
            errors.seek(0)
            stderr = errors.read()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    found = STATS.search(stderr)
    names = ("changed", "appeared", "disappeared", "unchanged")
    reported = dict(zip(names, map(int, found.groups()[2:]), strict=True)) if found else {}
    print(f"records per side: {args.records}  files: {sizes / 1e6:.0f} MB  "
          f"generated in {generated:.1f} s")  # fmt: skip
    print(f"diff: exit {returncode}, {wall:.1f} s wall, {cpu:.1f} s CPU, {peak_mb:.0f} MB peak "
          f"RSS of one process, {tree_mb:.0f} MB of all its processes at once (sampled); load "
          f"average before {load:.1f}")  # fmt: skip
    print(f"planted  {planted}")
    print(f"reported {reported}")
    bounded = wall <= TIME_BOUND_S and max(peak_mb, tree_mb) <= MEMORY_BOUND_MB
    if args.records >= 1_000_000:
        print(f"bound ({TIME_BOUND_S:.0f} s, {MEMORY_BOUND_MB:.0f} MB): "
              f"{'held' if bounded else 'EXCEEDED'}")  # fmt: skip
    expected_exit = 1 if planted["changed"] + planted["appeared"] + planted["disappeared"] else 0
    if reported != planted or returncode != expected_exit:
        sys.stderr.write(stderr.decode(errors="replace"))
        return 1
    return 0 if bounded or args.records < 1_000_000 else 1


if __name__ == "__main__":
    sys.exit(main())
