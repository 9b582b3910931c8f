"""Name resolution against a DNS server of our own on 127.0.0.1: no test asks a real one.

Every test that can reach DNS points the resolver (or --resolver) at `dns`, a fresh
LoopbackDNS per test whose query log shows what c-ares really sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
import socket
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from fetcher.backends import create_backend
from fetcher.cli import afetch
from fetcher.config import Config, ConfigError, parse_nameserver
from fetcher.errors import DNSError
from fetcher.loopback import (
    NOTIMP,
    REFUSED,
    SERVFAIL,
    LoopbackDNS,
    LoopbackHosts,
    replies,
    response,
)
from fetcher.resolve import Address, Resolver
from fetcher.stream import fetch_all

V4, V6 = int(socket.AF_INET), int(socket.AF_INET6)
RECORDS = {
    "www.afetch.test": ["127.0.0.1"],
    "other.afetch.test": ["127.0.0.2"],
    "dual.afetch.test": ["::1", "127.0.0.1"],  # IPv6 listed first on purpose
    "v6.afetch.test": ["::1"],
    "noaddr.afetch.test": [],
}
RCODES = {
    "servfail.afetch.test": SERVFAIL,
    "refused.afetch.test": REFUSED,
    "notimp.afetch.test": NOTIMP,
}
SILENT = "quiet.afetch.test"
GARBAGE = "garbage.afetch.test"  # answered with a reply no client can parse
# Short enough that a silent server costs a fraction of a second, long enough that a loaded
# machine still answers a loopback query in time.
FAST = {"timeout": 0.3, "tries": 1}

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def dns(hosts: LoopbackHosts) -> LoopbackDNS:
    server = LoopbackDNS(RECORDS, silent=[SILENT], rcodes=RCODES, garbage=[GARBAGE])
    server.port = hosts.serve_dns(server)  # type: ignore[attr-defined]
    return server


def server_of(dns: LoopbackDNS) -> str:
    """The --resolver value for `dns`."""
    return f"127.0.0.1:{dns.port}"  # type: ignore[attr-defined]


def nameserver_of(dns: LoopbackDNS) -> tuple[str, int]:
    """What a Resolver takes for `dns`: the (ip, port) Config.nameservers holds."""
    return ("127.0.0.1", dns.port)  # type: ignore[attr-defined]


async def resolve(dns: LoopbackDNS, *hosts: str, **options: Any) -> list[list[Address]]:
    """Resolve `hosts` one after another with one Resolver pointed at `dns`."""
    resolver = Resolver([nameserver_of(dns)], **{**FAST, **options})
    try:
        return [await resolver.resolve(host) for host in hosts]
    finally:
        await resolver.aclose()


def test_answers_come_from_the_given_server_ipv4_first(dns: LoopbackDNS) -> None:
    (dual, v6) = run(resolve(dns, "dual.afetch.test", "v6.afetch.test"))
    assert dual == [(V4, "127.0.0.1"), (V6, "::1")]
    assert v6 == [(V6, "::1")]
    assert sorted(dns.queries) == [
        ("dual.afetch.test", "A"),
        ("dual.afetch.test", "AAAA"),
        ("v6.afetch.test", "A"),
        ("v6.afetch.test", "AAAA"),
    ]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        pytest.param("nx.afetch.test", "domain name not found", id="nxdomain"),
        pytest.param("noaddr.afetch.test", "no address records", id="nodata"),
        pytest.param("servfail.afetch.test", "DNS server failure", id="servfail"),
        pytest.param("refused.afetch.test", "the DNS server refused the query", id="refused"),
        pytest.param("notimp.afetch.test", "does not implement the query", id="notimp"),
        pytest.param(GARBAGE, "malformed DNS response", id="garbage"),
        pytest.param("a..b", "invalid name", id="bad-name"),
    ],
)
def test_failures_are_dns_errors_with_a_reason(dns: LoopbackDNS, host: str, reason: str) -> None:
    with pytest.raises(DNSError) as caught:
        run(resolve(dns, host))
    error = caught.value
    assert (error.kind, error.phase) == ("dns-error", "dns")
    assert error.message.startswith(f"cannot resolve {host}: ")
    assert reason in error.message


def test_a_silent_server_is_a_dns_error_within_the_resolver_timeout(dns: LoopbackDNS) -> None:
    started = time.monotonic()
    with pytest.raises(DNSError, match="no answer from the DNS server"):
        run(resolve(dns, SILENT))
    assert time.monotonic() - started < 5  # 0.3 s asked for; wide margin for a loaded machine
    assert dns.count(SILENT) >= 1


def test_an_unreachable_server_is_a_dns_error() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: the query meets ICMP port unreachable

    async def lookup() -> None:
        resolver = Resolver([("127.0.0.1", port)], **FAST)
        try:
            await resolver.resolve("www.afetch.test")
        finally:
            await resolver.aclose()

    with pytest.raises(DNSError, match="cannot resolve www.afetch.test: "):
        run(lookup())


def test_answers_are_cached_and_failures_are_not(dns: LoopbackDNS) -> None:
    first, second = run(resolve(dns, "www.afetch.test", "www.afetch.test"))
    assert first == second == [(V4, "127.0.0.1")]
    assert dns.count("www.afetch.test", "A") == 1

    async def fail_twice() -> None:
        resolver = Resolver([nameserver_of(dns)], **FAST)
        for _ in range(2):
            with pytest.raises(DNSError):
                await resolver.resolve("nx.afetch.test")
        await resolver.aclose()

    run(fail_twice())
    assert dns.count("nx.afetch.test", "A") == 2  # asked again after a failure


def test_concurrent_lookups_of_one_name_share_one_query(dns: LoopbackDNS) -> None:
    async def many() -> list[list[Address]]:
        resolver = Resolver([nameserver_of(dns)], **FAST)
        try:
            return await asyncio.gather(*(resolver.resolve("www.afetch.test") for _ in range(50)))
        finally:
            await resolver.aclose()

    results = run(many())
    assert all(result == [(V4, "127.0.0.1")] for result in results)
    assert dns.count("www.afetch.test", "A") == 1


def test_lookups_of_distinct_names_overlap(hosts: LoopbackHosts) -> None:
    names = [f"n{i}.afetch.test" for i in range(50)]
    slow = LoopbackDNS(dict.fromkeys(names, ["127.0.0.1"]), delay=0.3)
    port = hosts.serve_dns(slow)

    async def all_at_once() -> list[list[Address]]:
        resolver = Resolver([("127.0.0.1", port)], timeout=5, tries=1)
        try:
            return await asyncio.gather(*(resolver.resolve(name) for name in names))
        finally:
            await resolver.aclose()

    started = time.monotonic()
    results = run(all_at_once())
    elapsed = time.monotonic() - started
    assert all(result == [(V4, "127.0.0.1")] for result in results)
    assert 0.3 <= elapsed < 5  # one server delay, not fifty of them (15 s) in a row
    assert len(slow.queries) == 100


def test_a_malformed_reply_fails_only_its_own_name(hosts: LoopbackHosts) -> None:
    # Every answer waits 0.3 s and leaves in the order the queries came, so the garbage reply
    # reaches c-ares while the good name's queries are still in flight on the same socket.
    slow = LoopbackDNS(RECORDS, garbage=[GARBAGE], delay=0.3)
    port = hosts.serve_dns(slow)

    async def together() -> list[list[Address] | BaseException]:
        resolver = Resolver([("127.0.0.1", port)], timeout=5, tries=2)
        try:
            lookups = (resolver.resolve(GARBAGE), resolver.resolve("www.afetch.test"))
            return await asyncio.gather(*lookups, return_exceptions=True)
        finally:
            await resolver.aclose()

    bad, good = run(together())
    assert good == [(V4, "127.0.0.1")]
    assert isinstance(bad, DNSError) and bad.kind == "dns-error"
    assert bad.message == f"cannot resolve {GARBAGE}: malformed DNS response"


def test_a_malformed_reply_to_a_lone_lookup_is_not_asked_again(dns: LoopbackDNS) -> None:
    with pytest.raises(DNSError, match="malformed DNS response"):
        run(resolve(dns, GARBAGE))  # FAST: one try
    assert dns.count(GARBAGE, "A") == 1  # nobody else's reply could have failed it


def test_the_cache_is_bounded(dns: LoopbackDNS) -> None:
    names = ["www.afetch.test", "dual.afetch.test", "other.afetch.test"]
    run(resolve(dns, *names, "other.afetch.test", "www.afetch.test", cache_size=2))
    assert dns.count("other.afetch.test", "A") == 1  # still cached: one of the two most recent
    assert dns.count("www.afetch.test", "A") == 2  # evicted by the third name, so asked again


def hosts_file_entry() -> tuple[str, str]:
    """A (name, IPv4 address) pair from /etc/hosts, preferring one that is not localhost (which
    c-ares would answer even without the file)."""
    pairs = []
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and "." in fields[0] and ":" not in fields[0]:
            pairs += [(name.lower(), fields[0]) for name in fields[1:]]
    pairs.sort(key=lambda pair: pair[0] == "localhost")
    return pairs[0] if pairs else ("localhost", "127.0.0.1")


@pytest.mark.skipif(not Path("/etc/hosts").is_file(), reason="no /etc/hosts here")
def test_the_hosts_file_is_read_before_dns(dns: LoopbackDNS) -> None:
    name, ip = hosts_file_entry()
    dns.records[name] = ["192.0.2.1"]  # what DNS would say, were it asked
    addresses, localhost = run(resolve(dns, name, "localhost"))
    assert (V4, ip) in addresses and (V4, "192.0.2.1") not in addresses
    assert localhost[0] == (V4, "127.0.0.1")
    assert dns.queries == []


def test_ip_literals_never_query(dns: LoopbackDNS) -> None:
    v4, v6 = run(resolve(dns, "127.0.0.1", "::1"))
    assert (v4, v6) == ([(V4, "127.0.0.1")], [(V6, "::1")])
    assert dns.queries == []


def test_a_closed_resolver_can_resolve_again(dns: LoopbackDNS) -> None:
    async def twice() -> list[Address]:
        resolver = Resolver([nameserver_of(dns)], **FAST)
        await resolver.resolve("www.afetch.test")
        assert resolver.uses_async_dns
        await resolver.aclose()
        try:
            return await resolver.resolve("www.afetch.test")  # a new channel, an empty cache
        finally:
            await resolver.aclose()

    assert run(twice()) == [(V4, "127.0.0.1")]
    assert dns.count("www.afetch.test", "A") == 2


@pytest.fixture
def without_aiodns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiodns", None)  # `import aiodns` now raises ImportError


@pytest.mark.usefixtures("without_aiodns")
def test_without_aiodns_getaddrinfo_resolves() -> None:
    async def lookup() -> tuple[list[Address], bool]:
        resolver = Resolver()
        try:
            return await resolver.resolve("localhost"), resolver.uses_async_dns
        finally:
            await resolver.aclose()

    addresses, uses_async_dns = run(lookup())
    assert addresses[0] == (V4, "127.0.0.1")
    assert not uses_async_dns


@pytest.mark.usefixtures("without_aiodns")
def test_without_aiodns_getaddrinfo_failures_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(DNSError) as caught:
        run(Resolver().resolve("nx.afetch.test"))
    assert caught.value.message == "cannot resolve nx.afetch.test: domain name not found"


@pytest.mark.usefixtures("without_aiodns")
def test_without_aiodns_custom_servers_are_refused() -> None:
    with pytest.raises(ConfigError, match="--resolver needs aiodns"):
        Resolver([("127.0.0.1", 53)])
    result = CliRunner().invoke(afetch, ["--resolver", "127.0.0.1", "x"])
    assert result.exit_code == 2
    assert result.stderr == (
        "afetch: error: --resolver needs aiodns, which is not installed (pip install aiodns)\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("192.0.2.1", ("192.0.2.1", 53), id="ipv4"),
        pytest.param("192.0.2.1:5353", ("192.0.2.1", 5353), id="ipv4-port"),
        pytest.param("2001:db8::1", ("2001:db8::1", 53), id="ipv6"),
        pytest.param("[2001:db8::1]", ("2001:db8::1", 53), id="ipv6-brackets"),
        pytest.param("[2001:db8::1]:5353", ("2001:db8::1", 5353), id="ipv6-port"),
    ],
)
def test_resolver_values(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


def test_the_config_holds_the_resolvers_parsed() -> None:
    """--resolver is read once, by Config: the backends hand its (ip, port) pairs on."""
    config = Config(resolvers=("192.0.2.1", "[2001:db8::1]:5353"))
    assert config.nameservers == (("192.0.2.1", 53), ("2001:db8::1", 5353))
    assert pickle.loads(pickle.dumps(config)).nameservers == config.nameservers
    assert dataclasses.replace(config, resolvers=("192.0.2.2:54",)).nameservers == (
        ("192.0.2.2", 54),
    )
    assert Config().nameservers == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("dns.example", "expected IP or IP:PORT", id="name"),
        pytest.param("192.0.2.300", "expected IP or IP:PORT", id="bad-ip"),
        pytest.param("", "expected IP or IP:PORT", id="empty"),
        pytest.param("[2001:db8::1", "expected IP or IP:PORT", id="unclosed"),
        pytest.param("[2001:db8::1]53", "expected IP or IP:PORT", id="no-colon"),
        pytest.param("192.0.2.1:", "port must be 1-65535", id="empty-port"),
        pytest.param("192.0.2.1:0", "port must be 1-65535", id="port-zero"),
        pytest.param("192.0.2.1:65536", "port must be 1-65535", id="port-high"),
        pytest.param("192.0.2.1:dns", "port must be 1-65535", id="port-name"),
    ],
)
def test_bad_resolver_values(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(resolvers=(text,))
    result = CliRunner().invoke(afetch, ["--resolver", text, "x"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def invoke(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(afetch, ["--json", *args], catch_exceptions=False)
    return (
        result.exit_code,
        [json.loads(line) for line in result.stdout.splitlines()],
        result.stderr,
    )


@pytest.mark.parametrize("backend", ["raw", "httpx"])
def test_cli_resolves_names_through_the_resolver(
    dns: LoopbackDNS, hosts: LoopbackHosts, backend: str
) -> None:
    port = hosts.serve(replies(response("200 OK")))
    code, records, err = invoke(
        "--backend",
        backend,
        "--resolver",
        server_of(dns),
        f"www.afetch.test:{port}",
        "nx.afetch.test",
    )
    assert code == 1, err
    by_input = {record["input"]: record for record in records}
    ok = by_input[f"www.afetch.test:{port}"]
    assert (ok["status_code"], ok["host_ip"]) == (200, "127.0.0.1")
    assert by_input["nx.afetch.test"]["error"] == {
        "kind": "dns-error",
        "phase": "dns",
        "message": "cannot resolve nx.afetch.test: domain name not found",
    }
    assert dns.count("www.afetch.test", "A") == dns.count("nx.afetch.test", "A") == 1


def test_config_file_sets_resolvers(dns: LoopbackDNS, hosts: LoopbackHosts, tmp_path: Path) -> None:
    port = hosts.serve(replies(response("200 OK")))
    config = tmp_path / "afetch.toml"
    config.write_text(f'resolver = ["{server_of(dns)}"]\n')
    code, records, err = invoke("--config", str(config), f"www.afetch.test:{port}")
    assert code == 0, err
    assert records[0]["status_code"] == 200


def test_cli_total_deadline_wins_over_a_silent_server(dns: LoopbackDNS) -> None:
    started = time.monotonic()
    code, records, _ = invoke("--resolver", server_of(dns), "-t", "0.5", SILENT)
    assert code == 1
    assert (records[0]["error"]["kind"], records[0]["error"]["phase"]) == ("timeout", "dns")
    assert time.monotonic() - started < 5  # the resolver alone would wait ~6 s


@pytest.mark.parametrize("backend_name", ["raw", "httpx"])
def test_fetch_all_closes_the_resolver(
    dns: LoopbackDNS, hosts: LoopbackHosts, backend_name: str
) -> None:
    port = hosts.serve(replies(response("200 OK")))
    config = Config(resolvers=(server_of(dns),), backend=backend_name)
    backend = create_backend(config)

    async def fetch() -> list[int | None]:
        return [
            r.status_code async for r in fetch_all([f"www.afetch.test:{port}"], config, backend)
        ]

    assert run(fetch()) == [200]
    assert dns.count("www.afetch.test", "A") == 1
    assert backend._resolver._lookup is None  # type: ignore[attr-defined]  # channel released


def test_closing_during_the_start_closes_what_it_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cut short while the resolver starts on its thread: aclose() waits for the start
    and closes the channel it opened, instead of leaving it to the garbage collector."""
    from fetcher import resolve

    closed: list[bool] = []

    class Lookup:
        async def __call__(self, host: str) -> list[Address]:
            return [(socket.AF_INET, "127.0.0.1")]

        async def aclose(self) -> None:
            closed.append(True)

    def slow_start(*args: Any) -> Lookup:
        time.sleep(0.2)
        return Lookup()

    monkeypatch.setattr(resolve, "_make_lookup", slow_start)

    async def go() -> bool:
        resolver = Resolver()
        lookup = asyncio.ensure_future(resolver.resolve("named.test"))
        await asyncio.sleep(0.05)
        lookup.cancel()
        await asyncio.gather(lookup, return_exceptions=True)
        await resolver.aclose()
        return resolver.ready

    assert run(go()) is False
    assert closed == [True]


# --- --resolve pins -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pin"),
    [
        ("example.com:443:127.0.0.1", ("example.com", 443, ((socket.AF_INET, "127.0.0.1"),))),
        ("Example.COM.:*:[::1]", ("example.com", None, ((socket.AF_INET6, "::1"),))),
        (
            "a.example:80:127.0.0.2,::1",
            ("a.example", 80, ((socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1"))),
        ),
    ],
)
def test_pins_take_curls_syntax(text: str, pin: object) -> None:
    from fetcher.resolve import parse_pin

    assert parse_pin(text) == pin


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("example.com:443", "expected HOST:PORT:ADDR"),
        (":443:127.0.0.1", "expected HOST:PORT:ADDR"),
        ("example.com:0:127.0.0.1", "PORT must be"),
        ("example.com:x:127.0.0.1", "PORT must be"),
        ("example.com:443:somewhere", "ADDR must be an IP address"),
        ("example.com:443:127.0.0.1,", "ADDR must be an IP address"),
    ],
)
def test_a_bad_pin_is_a_config_error(text: str, problem: str) -> None:
    from fetcher.config import Config, ConfigError

    with pytest.raises(ConfigError, match=problem):
        Config(pins=(text,))


def test_a_pin_answers_without_a_lookup_the_port_first() -> None:
    resolver = Resolver(
        pins=["a.example:*:127.0.0.2", "a.example:443:127.0.0.3", "a.example:443:::1"]
    )
    assert resolver.pinned("A.example", 443) == [(socket.AF_INET, "127.0.0.3")]  # first one wins
    assert resolver.pinned("a.example", 80) == [(socket.AF_INET, "127.0.0.2")]
    assert resolver.pinned("b.example", 80) is None
    assert Resolver().pinned("a.example", 80) is None
