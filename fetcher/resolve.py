"""Name resolution for the raw backend: the hosts file, then DNS through c-ares, cached per run.

Why not the event loop's getaddrinfo: it blocks, so asyncio runs it in a small thread pool and
only that many lookups are ever in flight; a run of distinct hosts behind a slow DNS server is
capped at a few names per second whatever --concurrency says. aiodns (c-ares) sends every query
from one socket and waits for all of them at once.

What a lookup does, in order:
- A name pinned with --resolve HOST:PORT:ADDR (curl's syntax) gets ADDR for that port and
  nothing else is asked (`Resolver.pinned`, which the backends ask first, with the port).
- IP literals never get here (`ip_literal`, the caller's fast path) and never query anything.
- The hosts file (/etc/hosts), then DNS: c-ares' getaddrinfo, A and AAAA asked in parallel,
  in the order nsswitch.conf gives (files, then DNS, where it says nothing). Custom servers
  (--resolver) replace resolv.conf's nameservers only: the hosts file is still read first, as
  curl --dns-servers does, so a pinned name stays pinned.
- IPv4 addresses first, then IPv6: the raw backend tries them in order, and a broken IPv6
  route is the more common failure.
- Answers are cached for the run in a bounded LRU (TTLs are not tracked: a run is minutes, not
  days); concurrent lookups of one name share one query; failures are not cached.

Without aiodns (a platform without c-ares wheels) the loop's getaddrinfo does the work: same
answers, lower ceiling, and no custom servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from . import extras
from .errors import DNSError
from .options import ConfigError
from .targets import IPV4_SHAPE

# Distinct names remembered per run. A million-line input of distinct hosts must not grow
# memory without bound; 4096 covers every repeated-host pattern seen in real host lists.
CACHE_SIZE = 4096
# c-ares waits DNS_TIMEOUT for a server's first answer, about twice that for the retry, and
# tries each server DNS_TRIES times: a silent server costs ~6 s, inside the 10 s default total
# timeout, while one lost UDP packet is retried within 2 s. Once servers have answered, c-ares
# shortens the wait to their measured latency.
DNS_TIMEOUT = 2.0
DNS_TRIES = 2
# Private channels open at once for lookups asked again after a malformed reply failed them
# together (see _AresLookup): one garbage answer beside 10 000 lookups in flight must not open
# 10 000 sockets. Each costs about 0.3 ms to make and one round trip to use.
RETRY_CHANNELS = 16

Address = tuple[int, str]  # (address family, IP address)
_INET, _INET6 = int(socket.AF_INET), int(socket.AF_INET6)

# c-ares status (aiodns.error constant name) -> the reason shown after "cannot resolve HOST: ".
_ARES_REASONS = {
    "ARES_ENOTFOUND": "domain name not found",  # NXDOMAIN
    "ARES_ENODATA": "no address records",  # the name exists, but has no A or AAAA record
    "ARES_ETIMEOUT": "no answer from the DNS server",
    "ARES_ECONNREFUSED": "DNS server unreachable",
    "ARES_EREFUSED": "the DNS server refused the query",  # REFUSED
    "ARES_ESERVFAIL": "DNS server failure",  # SERVFAIL
    "ARES_ENOTIMP": "the DNS server does not implement the query",  # NOTIMP
    "ARES_EFORMERR": "the DNS server could not parse the query",  # FORMERR
    "ARES_EBADRESP": "malformed DNS response",
    "ARES_EBADNAME": "invalid name",
    "ARES_ECANCELLED": "lookup cancelled",
    "ARES_EDESTRUCTION": "lookup cancelled",
}
# getaddrinfo's EAI_* codes for the same failures, so both paths tell them apart alike.
_GAI_REASONS = {
    socket.EAI_NONAME: "domain name not found",
    socket.EAI_AGAIN: "no answer from the DNS server",
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME): "no address records",  # not on macOS
}


Pin = tuple[str, int | None, tuple[Address, ...]]  # host (lower case), port (None: any), addresses


def parse_pin(text: str) -> Pin:
    """A --resolve value, curl's HOST:PORT:ADDR[,ADDR]... (PORT may be `*`: every port; an IPv6
    ADDR may be bracketed) -> (host, port, addresses). Raises ConfigError naming the value."""
    host, _, rest = text.partition(":")
    port_text, _, addresses_text = rest.partition(":")
    problem = "expected HOST:PORT:ADDR"
    if host and port_text and addresses_text:
        port = None if port_text == "*" else _port(port_text)
        addresses = [_address(item.strip()) for item in addresses_text.split(",")]
        if port_text == "*" or port is not None:
            if all(addresses):
                return host.lower().rstrip("."), port, tuple(a for a in addresses if a)
            problem = "ADDR must be an IP address"
        else:
            problem = "PORT must be 1-65535 or *"
    raise ConfigError(f"invalid --resolve {text!r}: {problem}")


def _port(text: str) -> int | None:
    if text.isascii() and text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


def _address(text: str) -> Address | None:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (_INET6 if ip.version == 6 else _INET, str(ip))


class Resolver:
    """Resolves names to addresses with an LRU cache shared by concurrent lookups.

    `nameservers` are (ip, port) pairs (Config.nameservers: --resolver parsed); empty means
    the system's.
    `pins` are --resolve values (Config.pins): names answered without asking anyone.
    The c-ares channel binds to the running event loop, so it is made on the first lookup and
    released by `aclose()`, both inside that loop.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        *,
        cache_size: int = CACHE_SIZE,
        timeout: float = DNS_TIMEOUT,
        tries: int = DNS_TRIES,
        pins: Sequence[str] = (),
    ) -> None:
        self._pins: dict[tuple[str, int | None], list[Address]] = {}
        for host, port, addresses in map(parse_pin, pins):  # the first of a host:port wins
            self._pins.setdefault((host, port), list(addresses))
        if nameservers:
            extras.AIODNS.require()  # the getaddrinfo fallback asks the system's servers only
        # c-ares' server syntax: ip:port, [ipv6]:port.
        self._servers = [
            f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip, port in nameservers
        ]
        self._timeout = timeout
        self._tries = tries
        self._cache: OrderedDict[str, asyncio.Future[list[Address]]] = OrderedDict()
        self._cache_size = cache_size
        self._lookup: _Lookup | None = None
        self._starting: asyncio.Future[_Lookup] | None = None

    def pinned(self, host: str, port: int) -> list[Address] | None:
        """The --resolve addresses of host:port (a pin for that port, else one for `*`), or
        None: the name is looked up as usual."""
        if not self._pins:
            return None
        host = host.lower()
        return self._pins.get((host, port)) or self._pins.get((host, None))

    async def resolve(self, host: str) -> list[Address]:
        """The addresses of `host`, IPv4 first; raises DNSError."""
        literal = ip_literal(host)
        if literal is not None:
            return literal
        future = self._cache.get(host)
        if future is None:
            future = asyncio.ensure_future(self._query(host))
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

    @property
    def uses_async_dns(self) -> bool:
        """True once lookups go through c-ares, False on the getaddrinfo fallback."""
        return isinstance(self._lookup, _AresLookup)

    @property
    def ready(self) -> bool:
        """Whether start() is done: a lookup now waits for nothing but its answer."""
        return self._lookup is not None

    async def start(self) -> None:
        """Import aiodns and open the c-ares channel, on a thread: about 20 ms the first time,
        which on the loop would hold up every fetch in flight. Callers that time lookups
        await this first (lookups start it themselves otherwise)."""
        await self._started()

    async def _started(self) -> _Lookup:
        if self._lookup is not None:
            return self._lookup
        starting = self._starting
        if starting is None:
            loop = asyncio.get_running_loop()
            starting = self._starting = loop.run_in_executor(
                None, _make_lookup, self._servers, self._timeout, self._tries, loop
            )
        # Shielded: one caller's deadline must not cancel the start the others await.
        lookup = await asyncio.shield(starting)
        if self._starting is starting and self._lookup is None:  # not closed meanwhile
            self._lookup = lookup
        return lookup

    async def _query(self, host: str) -> list[Address]:
        lookup = self._lookup or await self._started()
        return _ipv4_first(await lookup(host), host)

    async def aclose(self) -> None:
        """Release the c-ares channel and forget the cache; a later lookup starts afresh."""
        lookup, self._lookup = self._lookup, None
        starting, self._starting = self._starting, None
        self._cache.clear()
        if lookup is None and starting is not None:
            # A start still on its thread (the run was cut short): close what it makes.
            with contextlib.suppress(Exception):
                lookup = await starting
        if lookup is not None:
            await lookup.aclose()


class _Lookup(Protocol):
    """One uncached lookup: the addresses of a name, in any order, possibly repeated."""

    async def __call__(self, host: str) -> Iterable[Address]: ...

    async def aclose(self) -> None: ...


class _AresLookup:
    """c-ares through aiodns: the hosts file, then the configured or system DNS servers.

    Every lookup shares one channel, and so one UDP socket per server. A reply c-ares cannot
    parse closes that socket and fails every query in flight on it with EBADRESP, whoever's
    reply it was (c-ares' read_answers -> handle_conn_error). So a lookup that failed with
    EBADRESP while another lookup was in flight is asked once more on a channel of its own,
    where only its own answer can fail it: the good name resolves, the bad one gets its own
    error. A lookup that was alone has no one else to blame and is not asked again.
    """

    def __init__(
        self, servers: Sequence[str], timeout: float, tries: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        import aiodns

        self._aiodns = aiodns
        self._loop = loop  # the channels are made on a thread (Resolver.start), for this loop
        self._options = {"timeout": timeout, "tries": tries}
        self._servers = servers
        self._resolver = self._channel()
        self._error = aiodns.error.DNSError
        self._bad_response = aiodns.error.ARES_EBADRESP
        self._reasons = {getattr(aiodns.error, name): text for name, text in _ARES_REASONS.items()}
        self._in_flight = 0  # lookups awaiting the shared channel
        self._started = 0  # lookups ever started on it: tells whether another one overlapped
        self._retry_slots = asyncio.Semaphore(RETRY_CHANNELS)

    def _channel(self) -> Any:
        return self._aiodns.DNSResolver(
            self._servers,
            loop=self._loop,
            **self._options,
            # No `lookups="fb"` here although that is the order wanted: pycares 5.2 frees
            # that option's buffer before c-ares copies it, and a garbled order without "b"
            # fails every lookup at once with ECONNREFUSED. c-ares takes the order from
            # nsswitch.conf ("hosts: files dns"), and defaults to files then DNS without it.
        )

    async def __call__(self, host: str) -> Iterable[Address]:
        alone = self._in_flight == 0
        self._in_flight += 1
        self._started += 1
        started = self._started
        try:
            return await self._getaddrinfo(self._resolver, host)
        except self._error as exc:
            alone = alone and self._started == started
            if alone or _code(exc) != self._bad_response:
                raise self._dns_error(host, exc) from None
        finally:
            self._in_flight -= 1
        async with self._retry_slots:
            resolver = self._channel()
            try:
                return await self._getaddrinfo(resolver, host)
            except self._error as exc:
                raise self._dns_error(host, exc) from None
            finally:
                await resolver.close()

    @staticmethod
    async def _getaddrinfo(resolver: Any, host: str) -> list[Address]:
        result = await resolver.getaddrinfo(host, type=socket.SOCK_STREAM)
        return [(int(node.family), node.addr[0].decode()) for node in result.nodes]

    def _dns_error(self, host: str, exc: BaseException) -> DNSError:
        reason = self._reasons.get(_code(exc)) or str(exc.args[-1] if exc.args else exc).lower()
        return DNSError(f"cannot resolve {host}: {reason}", "dns")

    async def aclose(self) -> None:
        await self._resolver.close()


class _ThreadLookup:
    """The event loop's getaddrinfo: a blocking call in the loop's thread pool."""

    async def __call__(self, host: str) -> Iterable[Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            reason = _GAI_REASONS.get(exc.errno) or exc.strerror
            raise DNSError(f"cannot resolve {host}: {reason}", "dns") from None
        except UnicodeError:
            raise DNSError(f"cannot resolve {host}: invalid name", "dns") from None
        return [(int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos]

    async def aclose(self) -> None:
        """Nothing held: the loop owns its thread pool."""


def _make_lookup(
    servers: Sequence[str], timeout: float, tries: int, loop: asyncio.AbstractEventLoop
) -> _Lookup:
    if extras.AIODNS.available:
        return _AresLookup(servers, timeout, tries, loop)
    return _ThreadLookup()


def _ipv4_first(addresses: Iterable[Address], host: str) -> list[Address]:
    """Distinct addresses, IPv4 before IPv6, each family in the resolver's order."""
    unique = list(dict.fromkeys(addresses))
    if not unique:
        raise DNSError(f"cannot resolve {host}: no address records", "dns")
    return sorted(unique, key=lambda address: address[0] != _INET)


def _code(exc: BaseException) -> object:
    """The c-ares status of an aiodns error: its first argument."""
    return exc.args[0] if exc.args else None


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
