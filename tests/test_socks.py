"""-x socks5:// and socks5h:// on both backends: a scripted SOCKS5 proxy of our own for what the
proxy is asked and every way it can fail, and pproxy (a real one, as a subprocess on 127.0.0.1)
for the happy path."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from conftest import FetchOne
from test_proxy import answered_through, pipe, stop, wait_for_port

from fetcher.config import Config, ConfigError
from fetcher.errors import ConnectError, FetchTimeout
from fetcher.loopback import FOREVER, LoopbackDNS, LoopbackHosts, Script, recording, silent
from fetcher.loopback import replies as replies_with
from fetcher.loopback import response as http_response
from fetcher.proxy import Proxies, Proxy, parse_proxy

OK = http_response("200 OK", [("Server", "target")])
# RFC 1928 / 1929, as much as the scripted proxy speaks.
IPV4, DOMAIN, IPV6 = 0x01, 0x03, 0x04
GRANTED = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00"  # succeeded, bound to 127.0.0.1:0


@dataclass(frozen=True)
class Asked:
    """What a scripted proxy was asked: the auth methods offered, the credentials given, and the
    CONNECT's address type, host (name or address) and port."""

    methods: bytes
    credentials: tuple[bytes, bytes] | None
    atyp: int
    host: str
    port: int


def socks5(
    seen: list[Asked],
    *,
    reply: int = 0,
    credentials: tuple[bytes, bytes] | None = None,
    names: Mapping[str, str] | None = None,
) -> Script:
    """A loopback SOCKS5 proxy: no authentication, or RFC 1929's with `credentials`; each CONNECT
    is appended to `seen`, then refused with REP `reply`, or opened to the host (a name looked
    up in `names`, never in DNS) and piped both ways."""
    known = {"localhost": "127.0.0.1", **(names or {})}

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        given = None
        writer.write(b"\x05\x00" if credentials is None else b"\x05\x02")
        if credentials is not None:
            _, length = await reader.readexactly(2)
            user = await reader.readexactly(length)
            password = await reader.readexactly((await reader.readexactly(1))[0])
            given = (user, password)
            writer.write(b"\x01\x00" if given == credentials else b"\x01\x01")
            if given != credentials:
                return
        _, _command, _, atyp = await reader.readexactly(4)
        if atyp == IPV4:
            host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
        elif atyp == IPV6:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        else:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        seen.append(Asked(methods, given, atyp, host, port))
        if reply:
            writer.write(bytes([5, reply, 0, IPV4, 0, 0, 0, 0, 0, 0]))
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(
            known.get(host, host), port
        )
        writer.write(GRANTED)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return script


def hostile(greeting: bytes, connect: bytes | None = None) -> Script:
    """A proxy that answers the greeting with `greeting` and then, unless `connect` is None, the
    CONNECT request with `connect`; then it closes."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(3)  # python-socks greets with 05 01 00: no authentication
        writer.write(greeting)
        if connect is not None:
            await reader.read(300)
            writer.write(connect)
        await writer.drain()

    return script


def resets_after_greeting() -> Script:
    """A proxy that accepts the greeting, then resets the connection (SO_LINGER 0: an RST)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(3)
        writer.write(b"\x05\x00")
        await writer.drain()
        await reader.read(300)
        linger = struct.pack("ii", 1, 0)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    return script


def mute_after_greeting() -> Script:
    """A proxy that accepts the greeting and never answers the CONNECT."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(3)
        writer.write(b"\x05\x00")
        await asyncio.wait_for(reader.read(), FOREVER)

    return script


# --- through a proxy of our own -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_what_the_proxy_is_asked_and_the_target_gets(
    hosts: LoopbackHosts,
    fetch: FetchOne,
    server_tls: ssl.SSLContext,
    ca_file: str,
    scheme: str,
) -> None:
    """socks5 sends the address afetch resolved, socks5h the name (curl's meaning of each); the
    target gets its request as without a proxy, TLS inside the tunnel with its own name."""
    at_plain: list[bytes] = []
    at_secure: list[bytes] = []
    plain = hosts.serve(recording(OK, at_plain))
    secure = hosts.serve(recording(OK, at_secure), tls=server_tls)
    seen: list[Asked] = []
    proxy = f"{scheme}://127.0.0.1:{hosts.serve(socks5(seen))}"
    for url in (f"http://localhost:{plain}/a?b=1", f"https://localhost:{secure}/a?b=1"):
        result = fetch(url, cafile=ca_file, proxy=proxy)
        assert result.status_code == 200, (url, result.error)
        assert result.headers_by_name()["server"] == ["target"]
        assert result.host_ip == "127.0.0.1"  # the proxy's: the address afetch connected to
        assert result.timings["connect"] is not None
    assert result.timings["tls"] is not None and result.tls is not None
    assert result.tls.verified
    asked = ("localhost", DOMAIN) if scheme == "socks5h" else ("127.0.0.1", IPV4)
    assert [(a.host, a.atyp, a.port) for a in seen] == [(*asked, plain), (*asked, secure)]
    assert [a.methods for a in seen] == [b"\x00", b"\x00"]  # no credentials: none offered
    for request, port in ((at_plain[0], plain), (at_secure[0], secure)):
        assert request.startswith(b"GET /a?b=1 HTTP/1.1\r\n")  # origin form: not a proxy's
        assert f"\r\nHost: localhost:{port}\r\n".encode() in request
        assert b"Proxy-Authorization" not in request


def test_credentials_are_sent_as_rfc_1929_asks(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    target = hosts.serve(replies_with(OK))
    seen: list[Asked] = []
    port = hosts.serve(socks5(seen, credentials=(b"us@r", b"p:ss")))
    result = fetch(f"127.0.0.1:{target}", proxy=f"socks5h://us%40r:p%3Ass@127.0.0.1:{port}")
    assert result.status_code == 200, result.error
    assert seen[0].methods == b"\x00\x02" and seen[0].credentials == (b"us@r", b"p:ss")
    refused = fetch(f"127.0.0.1:{target}", proxy=f"socks5://us%40r:wrong@127.0.0.1:{port}")
    assert refused.error is not None
    assert (refused.error.kind, refused.error.phase) == ("proxy-error", "proxy")
    assert refused.error.message == (
        f"proxy 127.0.0.1:{port}: SOCKS5 handshake failed:"
        " username and password authentication failure"
    )


@pytest.mark.parametrize(
    ("reply", "kind", "phase", "message"),
    [
        (0x01, "proxy-error", "proxy", "refused the tunnel: SOCKS5 reply 0x01, general SOCKS"),
        (0x02, "proxy-error", "proxy", "refused the tunnel: SOCKS5 reply 0x02, connection not"),
        (0x03, "connection-error", "connect", "network unreachable (as reported by SOCKS5 proxy"),
        (0x04, "connection-error", "connect", "host unreachable (as reported by SOCKS5 proxy"),
        (0x05, "connection-refused", "connect", "connection refused (as reported by SOCKS5"),
        (0x06, "connection-error", "connect", "TTL expired (as reported by SOCKS5 proxy"),
        (0x07, "proxy-error", "proxy", "SOCKS5 reply 0x07, command not supported"),
        (0x08, "proxy-error", "proxy", "SOCKS5 reply 0x08, address type not supported"),
    ],
)
def test_a_failed_reply_blames_the_proxy_or_the_target(
    hosts: LoopbackHosts, fetch: FetchOne, reply: int, kind: str, phase: str, message: str
) -> None:
    """REP 0x03-0x06: the proxy tried, and the target did not take the connection (the target's
    failure, phase connect); any other: the proxy's (phase proxy)."""
    port = hosts.serve(socks5([], reply=reply))
    result = fetch("https://localhost:1/", proxy=f"socks5://127.0.0.1:{port}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == (kind, phase), result.error
    assert message in result.error.message and f"127.0.0.1:{port}" in result.error.message


def test_a_target_refused_behind_the_proxy_is_fallen_back_from(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    """--scheme auto: https refused at the target (REP 0x05) tries http, as without a proxy; a
    proxy that is down does not (test_proxy's test of the same)."""
    seen: list[Asked] = []
    port = hosts.serve(socks5(seen, reply=0x05))
    result = fetch("localhost", proxy=f"socks5h://127.0.0.1:{port}", scheme="auto")
    assert result.error is not None and result.error.kind == "connection-refused"
    assert [a.port for a in seen] == [443, 80] and len(result.attempts) == 2
    down = hosts.refused()
    result = fetch("localhost", proxy=f"socks5://127.0.0.1:{down}", scheme="auto")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("connection-refused", "proxy")
    assert result.error.message == f"proxy 127.0.0.1:{down}: connection refused"
    assert len(result.attempts) == 1


@pytest.mark.parametrize(
    ("script", "kind", "message"),
    [
        pytest.param(
            hostile(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            "proxy-error",
            "SOCKS5 handshake failed: unexpected SOCKS version number: 72",
            id="not-socks",
        ),
        pytest.param(
            hostile(b"\x05\xff"),
            "proxy-error",
            "SOCKS5 handshake failed: no acceptable authentication methods were offered",
            id="wants-auth",
        ),
        pytest.param(
            hostile(b"\x05\x00", b""),
            "proxy-error",
            "SOCKS5 handshake failed: connection closed unexpectedly",
            id="closed",
        ),
        pytest.param(
            resets_after_greeting(),
            "connection-error",
            "connection reset by peer",
            id="reset",
        ),
        pytest.param(
            hostile(b"\x05\x00", b"\x05\x09\x00\x01\x00\x00\x00\x00\x00\x00"),
            "proxy-error",
            "SOCKS5 handshake failed: invalid reply code: 0X9",
            id="unknown-reply",
        ),
        pytest.param(
            hostile(b"\x05\x00", b"\x05\x00\x00\x03\x02\xff\xfe\x00\x50"),
            "protocol-error",
            "malformed SOCKS5 reply",
            id="bound-name-not-utf8",
        ),
    ],
)
def test_a_hostile_handshake_is_the_proxys_fault(
    hosts: LoopbackHosts, fetch: FetchOne, script: Script, kind: str, message: str
) -> None:
    port = hosts.serve(script)
    result = fetch("http://localhost:1/", proxy=f"socks5h://127.0.0.1:{port}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == (kind, "proxy"), result.error
    assert result.error.message == f"proxy 127.0.0.1:{port}: {message}"


@pytest.mark.parametrize("script", [silent(), mute_after_greeting()], ids=["greeting", "connect"])
def test_a_silent_proxy_times_out_within_the_connect_timeout(
    hosts: LoopbackHosts, fetch: FetchOne, script: Script
) -> None:
    port = hosts.serve(script)
    started = time.monotonic()
    result = fetch(
        "https://localhost:1/", proxy=f"socks5://127.0.0.1:{port}", connect_timeout=0.3, timeout=20
    )
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "proxy"), result.error
    assert result.error.message == "proxy not done within 0.3 s"
    assert time.monotonic() - started < 10  # the connect timeout, not the total one


@pytest.fixture
def unanswered() -> Iterator[int]:
    """A port whose connects are never answered: its listener's accept queue (backlog 0: one
    connection) is full, and Linux drops the SYNs that find it so."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    with listener, socket.create_connection(("127.0.0.1", port), timeout=5):
        yield port


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_a_proxy_that_never_accepts_times_out_within_the_connect_timeout(
    fetch: FetchOne, unanswered: int, scheme: str
) -> None:
    """The TCP connect to the proxy is under the connect deadline too, and its socket is closed
    when the deadline cancels it (python-socks before 3.2.1 left it to the garbage collector:
    a ResourceWarning, an error here)."""
    proxy = f"{scheme}://127.0.0.1:{unanswered}"
    result = fetch("http://localhost:1/", proxy=proxy, connect_timeout=0.3, timeout=20)
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "proxy"), result.error


def test_names_are_resolved_where_the_scheme_says(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    """socks5: the target's name by afetch's resolver (--resolve, --resolver; its failure the
    target's); socks5h: by the proxy, never asked here. The proxy's own name is afetch's."""
    dns = LoopbackDNS({"proxy.test": ["127.0.0.1"]})
    resolvers = (f"127.0.0.1:{hosts.serve_dns(dns)}",)
    target = hosts.serve(replies_with(OK))
    seen: list[Asked] = []
    port = hosts.serve(socks5(seen, names={"nowhere.test": "127.0.0.1"}))
    unknown = fetch(
        f"nowhere.test:{target}", proxy=f"socks5://127.0.0.1:{port}", resolvers=resolvers
    )
    assert unknown.error is not None
    assert (unknown.error.kind, unknown.error.phase) == ("dns-error", "dns"), unknown.error
    assert not seen  # the proxy was never asked
    remote = fetch(
        f"nowhere.test:{target}", proxy=f"socks5h://proxy.test:{port}", resolvers=resolvers
    )
    assert remote.status_code == 200, remote.error
    assert dns.count("nowhere.test") == 2 and dns.count("proxy.test") == 2  # A and AAAA each
    pins = (f"pinned.test:{target}:127.0.0.1",)
    pinned = fetch(f"pinned.test:{target}", proxy=f"socks5://127.0.0.1:{port}", pins=pins)
    assert pinned.status_code == 200, pinned.error
    assert [(a.host, a.atyp) for a in seen] == [("nowhere.test", DOMAIN), ("127.0.0.1", IPV4)]
    lost = fetch("localhost:1", proxy=f"socks5://proxy.invalid:{port}", resolvers=resolvers)
    assert lost.error is not None
    assert (lost.error.kind, lost.error.phase) == ("dns-error", "proxy"), lost.error
    assert lost.error.message.startswith(f"proxy proxy.invalid:{port}: cannot resolve")


def test_a_target_failing_behind_the_proxy_is_the_targets_fault(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext, ca_file: str
) -> None:
    target = hosts.serve(replies_with(OK), tls=wrong_name_tls)
    port = hosts.serve(socks5([]))
    result = fetch(
        f"https://localhost:{target}/", cafile=ca_file, proxy=f"socks5://127.0.0.1:{port}"
    )
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("tls-error", "tls"), result.error
    assert result.tls is not None and result.tls.capture_error == (
        "certificate not captured: through a proxy"
    )
    huge = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    big = hosts.serve(replies_with(huge))
    result = fetch(f"127.0.0.1:{big}", proxy=f"socks5://127.0.0.1:{port}")
    assert result.error is not None  # the raw backend's limits hold behind the proxy
    assert (result.error.kind, result.error.phase) == ("protocol-error", "read"), result.error


# --- which proxy, from what -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("socks5://127.0.0.1", Proxy("127.0.0.1", 1080, None, "socks5")),
        ("SOCKS5H://[::1]:9050/", Proxy("::1", 9050, None, "socks5h")),
        ("socks5h://a%20b:c@p:1", Proxy("p", 1, None, "socks5h", ("a b", "c"))),
    ],
)
def test_socks_proxy_urls(url: str, proxy: Proxy) -> None:
    assert parse_proxy(url) == proxy


@pytest.mark.parametrize(
    "url",
    [
        "socks5://user@p:1",
        "socks5://:pass@p:1",
        "socks5h://us\u00e9r:p@p:1",
        f"socks5://u:{'x' * 256}@p:1",
    ],
)
def test_credentials_rfc_1929_cannot_carry_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="SOCKS5 user name and password are each 1 to 255 ASCII"):
        Config(proxy=url)


def test_all_proxy_stands_in_for_a_scheme_without_its_own() -> None:
    env = {"ALL_PROXY": "socks5h://all:1", "https_proxy": "http://secure:2", "NO_PROXY": "local"}
    proxies = Proxies(None, True, env)
    assert proxies.for_target("http", "a", 80) == Proxy("all", 1, None, "socks5h")
    assert proxies.for_target("https", "a", 443) == Proxy("secure", 2)
    assert proxies.for_target("http", "local", 80) is None
    assert proxies.socks and not Proxies(None, True, {"https_proxy": "http://p:1"}).socks
    assert Proxies(None, True, {"all_proxy": "socks5://lower:1"}).socks


def test_proxy_env_takes_a_socks_proxy_from_all_proxy(
    hosts: LoopbackHosts, fetch: FetchOne, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = hosts.serve(replies_with(OK))
    seen: list[Asked] = []
    monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{hosts.serve(socks5(seen))}")
    result = fetch(f"http://localhost:{target}/", proxy_env=True)
    assert result.status_code == 200, result.error
    assert [(a.host, a.port) for a in seen] == [("localhost", target)]


def test_without_python_socks_a_socks_proxy_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from fetcher.cli import afetch

    monkeypatch.setitem(sys.modules, "python_socks", None)  # `import python_socks` now fails
    with pytest.raises(ConfigError, match=r"pip install 'afetch\[socks\]'"):
        Config(proxy="socks5://127.0.0.1:1080")
    monkeypatch.setenv("ALL_PROXY", "socks5h://127.0.0.1:1080")
    with pytest.raises(ConfigError, match=r"afetch\[socks\]"):
        Config(proxy_env=True)
    Config(proxy="http://127.0.0.1:3128")  # an HTTP proxy does without it
    result = CliRunner().invoke(afetch, ["-x", "socks5://127.0.0.1:1080", "x"])
    assert result.exit_code == 2
    assert result.stderr == (
        "afetch: error: SOCKS5 proxies need python-socks: pip install 'afetch[socks]'\n"
    )


def test_python_socks_timeouts_and_failures_map_onto_ours() -> None:
    """The rows of map_socks_error no loopback proxy reaches: python-socks's own timeout, which
    ours always beats (it starts later), and a connect failure without an errno."""
    from python_socks import ProxyConnectionError, ProxyTimeoutError

    from fetcher.socks import map_socks_error

    proxy = Proxy("p", 1, None, "socks5")
    late = map_socks_error(ProxyTimeoutError("timed out"), proxy, 2.0)
    assert isinstance(late, FetchTimeout) and late.message == "proxy not done within 2 s"
    assert map_socks_error(ProxyTimeoutError("x"), proxy, None).message == "proxy not done in time"
    failed = map_socks_error(ProxyConnectionError("no route"), proxy, 2.0)
    assert isinstance(failed, ConnectError) and failed.phase == "proxy"
    assert failed.message == "proxy p:1: no route"


# --- through a real proxy: pproxy ---------------------------------------------------------------

# pproxy's own command line installs uvloop's policy and then asks for a loop it no longer
# makes (uvloop 0.21 and later); its documented API (pproxy.Server) runs on a loop of ours.
# authtime -1: every connection authenticates (pproxy otherwise lets an address that once did
# in without credentials for 30 days).
PPROXY = """
import asyncio, pathlib, sys
import pproxy

async def main():
    server = await pproxy.Server(sys.argv[1]).start_server({"rserver": [], "authtime": -1})
    pathlib.Path(sys.argv[2]).write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.sleep(float(sys.argv[3]))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def real_socks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """pproxy serving SOCKS5 on 127.0.0.1, with user name `u` and password `p`, on a port it
    picks (written to a file we poll); it exits by itself after FOREVER seconds."""
    pytest.importorskip("pproxy", reason="pproxy is in the dev extra")
    port_file = tmp_path_factory.mktemp("pproxy") / "port"
    command = [
        sys.executable,
        "-c",
        PPROXY,
        "socks5://127.0.0.1:0#u:p",
        str(port_file),
        str(FOREVER),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield wait_for_port(port_file, process, "pproxy")
    finally:
        stop(process)


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_through_a_real_socks_proxy(
    hosts: LoopbackHosts,
    fetch: FetchOne,
    real_socks: int,
    server_tls: ssl.SSLContext,
    ca_file: str,
    scheme: str,
) -> None:
    plain = hosts.serve(replies_with(OK))
    secure = hosts.serve(replies_with(OK), tls=server_tls)
    proxy = f"{scheme}://u:p@127.0.0.1:{real_socks}"
    urls = (f"http://localhost:{plain}/", f"https://localhost:{secure}/")
    for result in answered_through(fetch, proxy, ca_file, *urls):
        assert result.host_ip == "127.0.0.1"
    # Without the credentials pproxy closes on the greeting: the proxy's failure.
    anonymous = fetch(f"http://localhost:{plain}/", proxy=f"{scheme}://127.0.0.1:{real_socks}")
    assert anonymous.error is not None
    assert (anonymous.error.kind, anonymous.error.phase) == ("proxy-error", "proxy")
