"""Name resolution for the raw backend: IP literals skip DNS, names are cached per run."""

from __future__ import annotations

import asyncio
import socket
from collections import OrderedDict

from .errors import DNSError
from .targets import IPV4_SHAPE

# Distinct names remembered per run. A million-line input of distinct hosts must not grow
# memory without bound; 4096 covers every repeated-host pattern seen in real host lists.
CACHE_SIZE = 4096

Address = tuple[int, str]  # (address family, IP address)
_INET, _INET6 = int(socket.AF_INET), int(socket.AF_INET6)


class Resolver:
    """getaddrinfo through the event loop, with an LRU cache shared by concurrent lookups."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._cache: OrderedDict[str, asyncio.Future[list[Address]]] = OrderedDict()
        self._cache_size = cache_size

    async def resolve(self, host: str) -> list[Address]:
        literal = ip_literal(host)
        if literal is not None:
            return literal
        future = self._cache.get(host)
        if future is None:
            future = asyncio.ensure_future(self._lookup(host))
            # Mark the outcome as seen even if every waiter was cancelled meanwhile.
            future.add_done_callback(_consume)
            self._cache[host] = future
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(host)
        try:
            # Shielded: one caller's timeout must not cancel the lookup the others await.
            return await asyncio.shield(future)
        except DNSError:
            # Failures are not cached; a retry asks again.
            if self._cache.get(host) is future:
                del self._cache[host]
            raise

    @staticmethod
    async def _lookup(host: str) -> list[Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise DNSError(f"cannot resolve {host}: {exc.strerror}", "dns") from None
        except UnicodeError:
            raise DNSError(f"cannot resolve {host}: invalid name", "dns") from None
        addresses: list[Address] = []
        for family, _, _, _, sockaddr in infos:
            address = (int(family), str(sockaddr[0]))
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise DNSError(f"cannot resolve {host}: no addresses", "dns")
        return addresses


def _consume(future: asyncio.Future[list[Address]]) -> None:
    if not future.cancelled():
        future.exception()


def ip_literal(host: str) -> list[Address] | None:
    """The address itself if `host` is an IP literal, else None (a name to resolve). Targets
    hold validated hosts: a dotted quad is IPv4, anything with a colon is IPv6."""
    if ":" in host:
        return [(_INET6, host)]
    if IPV4_SHAPE.match(host):
        return [(_INET, host)]
    return None
