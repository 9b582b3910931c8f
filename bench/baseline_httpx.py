"""Baseline: httpx.AsyncClient used the way its docs show — one client, a semaphore, gather.

"Default use" on purpose: default limits, default timeouts aside from the bench's, no tuning.
Reads one URL per line from a file and prints ``{"records": n, "ok": k}`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httpx


async def fetch_all(urls: list[str], concurrency: int, timeout: float) -> tuple[int, int]:
    semaphore = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(timeout=timeout) as client:

        async def fetch(url: str) -> bool:
            async with semaphore:
                try:
                    response = await client.get(url)
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

        results = await asyncio.gather(*(fetch(url) for url in urls))
    return len(results), sum(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls_file")
    parser.add_argument("-c", "--concurrency", type=int, default=200)
    parser.add_argument("-t", "--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with open(args.urls_file) as file:
        urls = [line.strip() for line in file if line.strip()]
    records, ok = asyncio.run(fetch_all(urls, args.concurrency, args.timeout))
    print(json.dumps({"records": records, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
