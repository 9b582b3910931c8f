"""Baseline: asyncio streams, tutorial style — open_connection, write GET, readuntil, close.

Run under the default event loop or, with ``--loop uvloop``, under uvloop. Reads one URL per line
from a file and prints ``{"records": n, "ok": k}`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit


async def fetch(url: str, semaphore: asyncio.Semaphore, timeout: float) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    async with semaphore:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(
                        f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
                    )
                    head = await reader.readuntil(b"\r\n\r\n")
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return False
    return head.split(b" ", 2)[1:2] == [b"200"]


async def fetch_all(urls: list[str], concurrency: int, timeout: float) -> tuple[int, int]:
    semaphore = asyncio.Semaphore(concurrency)
    results = await asyncio.gather(*(fetch(url, semaphore, timeout) for url in urls))
    return len(results), sum(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls_file")
    parser.add_argument("-c", "--concurrency", type=int, default=200)
    parser.add_argument("-t", "--timeout", type=float, default=10.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    with open(args.urls_file) as file:
        urls = [line.strip() for line in file if line.strip()]
    work = fetch_all(urls, args.concurrency, args.timeout)
    if args.loop == "uvloop":
        import uvloop

        records, ok = uvloop.run(work)
    else:
        records, ok = asyncio.run(work)
    print(json.dumps({"records": records, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
