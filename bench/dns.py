"""Lookups per second: afetch's resolver on aiodns (c-ares) against its getaddrinfo fallback.

    sudo .venv/bin/python bench/dns.py [--names 3000] [--concurrency 200] [--delay 0 0.05]

Both ask the same LoopbackDNS (fetcher/loopback.py), run in a process of its own on
127.0.0.53:53, for distinct names (no cache hits), `--concurrency` lookups in flight.
getaddrinfo can only ask the servers in /etc/resolv.conf, so its runs happen in a private mount
namespace (`unshare -m`, root) where a bind mount shows them a resolv.conf naming the loopback
server; the machine's own file is never touched. `--delay` makes the server answer after that
many seconds, as a distant DNS server does: that is where a thread pool caps a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER_IP = "127.0.0.53"
DOMAIN = "bench.test"


def names(count: int) -> list[str]:
    return [f"h{i}.{DOMAIN}" for i in range(count)]


def serve(count: int, delay: float) -> None:
    """Child: answer A/AAAA for `count` names on SERVER_IP:53 until stdin closes."""
    from fetcher.loopback import LoopbackDNS, LoopbackHosts

    with LoopbackHosts() as hosts:
        server = LoopbackDNS(dict.fromkeys(names(count), ["127.0.0.1"]), delay=delay)
        hosts.serve_dns(server, SERVER_IP, 53)
        print("ready", flush=True)
        sys.stdin.read()


async def lookups(count: int, concurrency: int, servers: list[tuple[str, int]]) -> dict[str, float]:
    """Child: resolve `count` distinct names, `concurrency` at a time; time it."""
    from fetcher.errors import DNSError
    from fetcher.resolve import Resolver

    resolver = Resolver(servers)
    slots = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(name: str) -> None:
        nonlocal failed
        async with slots:
            try:
                await resolver.resolve(name)
            except DNSError:
                failed += 1

    await resolver.resolve(f"h0.{DOMAIN}")  # warm up: the channel or the thread pool
    started = time.perf_counter()
    await asyncio.gather(*(one(name) for name in names(count)[1:]))
    seconds = time.perf_counter() - started
    await resolver.aclose()
    return {"lookups": count - 1, "seconds": seconds, "failed": failed}


def client(mode: str, loop: str, count: int, concurrency: int) -> None:
    if mode == "getaddrinfo":
        sys.modules["aiodns"] = None  # type: ignore[assignment]  # force the fallback
        servers: list[tuple[str, int]] = []
    else:
        servers = [(SERVER_IP, 53)]
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(lookups(count, concurrency, servers))))


def measure(mode: str, loop: str, args: argparse.Namespace, resolv_conf: Path) -> dict[str, float]:
    argv = [sys.executable, __file__, "--client", mode, "--loop", loop]
    argv += ["--names", str(args.names), "--concurrency", str(args.concurrency)]
    if mode == "getaddrinfo":
        command = " ".join(argv)
        argv = [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount --bind {resolv_conf} /etc/resolv.conf && {command}",
        ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--delay", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=["aiodns", "getaddrinfo"], help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.serve:
        serve(args.names, args.delay[0])
        return 0
    if args.client:
        client(args.client, args.loop, args.names, args.concurrency)
        return 0

    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("bench/dns.py needs root and unshare(1) for the getaddrinfo runs", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="afetch-dns-"))
    resolv_conf = workdir / "resolv.conf"
    resolv_conf.write_text(f"nameserver {SERVER_IP}\n")
    cases = [("aiodns", "asyncio"), ("aiodns", "uvloop")]
    cases += [("getaddrinfo", "asyncio"), ("getaddrinfo", "uvloop")]
    print(f"{args.names} distinct names, {args.concurrency} in flight, median of {args.rounds}")
    print("| server delay | resolver | loop | lookups/s (median) | min-max | failed |")
    print("|---|---|---|---|---|---|")
    for delay in args.delay:
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--names",
                str(args.names),
                "--delay",
                str(delay),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            for mode, loop in cases:
                runs = [measure(mode, loop, args, resolv_conf) for _ in range(args.rounds)]
                rates = sorted(run["lookups"] / run["seconds"] for run in runs)
                failed = max(run["failed"] for run in runs)
                print(
                    f"| {delay * 1000:g} ms | {mode} | {loop} | {rates[len(rates) // 2]:,.0f} "
                    f"| {rates[0]:,.0f}-{rates[-1]:,.0f} | {failed:g} |",
                    flush=True,
                )
        finally:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(timeout=10)
    shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
