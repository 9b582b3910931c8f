"""-x/--proxy on both backends: a loopback proxy of our own for every way a proxy can fail, and
proxy.py (a real proxy, as a subprocess on 127.0.0.1) for the happy path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FetchOne

from fetcher.config import Config, ConfigError
from fetcher.errors import FetchError
from fetcher.loopback import LoopbackHosts, Script, read_request, recording, replies, response
from fetcher.models import Result
from fetcher.proxy import Proxies, Proxy, blame_proxy, parse_proxy

OK = response("200 OK", [("Server", "target")])
# How long proxy.py may take to start and write its port file: about 0.6 s here, unloaded.
PROXY_START_SECONDS = 30.0


def proxying(
    seen: list[bytes], tunnel_answer: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n"
) -> Script:
    """A loopback HTTP proxy: CONNECT host:port opens a tunnel (answering `tunnel_answer`; a
    non-2xx one ends there), anything else is forwarded as received to the absolute URL's
    host:port. Each request head it gets is appended to `seen`."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        seen.append(head)
        method, target, _ = head.split(b" ", 2)
        if method == b"CONNECT":
            host, _, port = target.rpartition(b":")
            writer.write(tunnel_answer)
            await writer.drain()
            if not tunnel_answer.startswith(b"HTTP/1.1 2"):
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                host.decode(), int(port)
            )
        else:
            authority = target.split(b"/")[2]
            host, _, port = authority.rpartition(b":")
            upstream_reader, upstream_writer = await asyncio.open_connection(
                host.decode(), int(port)
            )
            upstream_writer.write(head)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return script


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy what `reader` receives to `writer` until EOF (or 10 s without a byte)."""
    with contextlib.suppress(ConnectionError):
        while data := await asyncio.wait_for(reader.read(65536), 10):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


def answering(data: bytes) -> Script:
    """A proxy that answers every request with `data` and closes."""
    return replies(data)


# --- through a proxy of our own -----------------------------------------------------------------


def test_https_goes_through_a_connect_tunnel(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    at_target: list[bytes] = []
    target = hosts.serve(recording(OK, at_target), tls=server_tls)
    at_proxy: list[bytes] = []
    proxy = hosts.serve(proxying(at_proxy))
    result = fetch(f"https://localhost:{target}/x", cafile=ca_file, proxy=f"127.0.0.1:{proxy}")
    assert result.status_code == 200, result.error
    assert at_proxy == [
        f"CONNECT localhost:{target} HTTP/1.1\r\nHost: localhost:{target}\r\n\r\n".encode()
    ]
    # Inside the tunnel: TLS with the target's name, and the request as without a proxy.
    assert at_target[0].startswith(b"GET /x HTTP/1.1\r\n")
    assert f"\r\nHost: localhost:{target}\r\n".encode() in at_target[0]
    assert result.host_ip == "127.0.0.1" and result.timings["tls"] is not None
    assert result.timings.get("ttfb") is not None  # counted from the request, not the CONNECT
    # With credentials in the proxy URL, the CONNECT carries them (and only the CONNECT).
    fetch(f"https://localhost:{target}/", cafile=ca_file, proxy=f"http://u:p@127.0.0.1:{proxy}")
    token = base64.b64encode(b"u:p").decode()
    assert f"\r\nProxy-Authorization: Basic {token}\r\n".encode() in at_proxy[1]
    assert b"Proxy-Authorization" not in at_target[1]


def test_http_is_asked_in_absolute_form_with_the_proxys_credentials(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    target = hosts.serve(replies(OK))
    at_proxy: list[bytes] = []
    proxy = hosts.serve(proxying(at_proxy))
    result = fetch(f"127.0.0.1:{target}/a?b=1", proxy=f"http://us%40r:p%3Ass@127.0.0.1:{proxy}")
    assert result.status_code == 200, result.error
    assert result.headers_by_name()["server"] == ["target"]
    request = at_proxy[0].decode()
    assert request.startswith(f"GET http://127.0.0.1:{target}/a?b=1 HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{target}\r\n" in request
    token = base64.b64encode(b"us@r:p:ss").decode()
    assert f"\r\nProxy-Authorization: Basic {token}\r\n" in request


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        pytest.param(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "proxy-error",
            "refused the tunnel: 407 Proxy Authentication Required",
            id="refused",
        ),
        pytest.param(
            b"SSH-2.0-OpenSSH\r\n\r\n", "protocol-error", "not an HTTP response", id="not-http"
        ),
        pytest.param(b"", "connection-error", "connection closed without a response", id="closed"),
    ],
)
def test_a_proxy_failing_the_tunnel_is_blamed(
    hosts: LoopbackHosts, fetch: FetchOne, answer: bytes, kind: str, message: str
) -> None:
    proxy = hosts.serve(answering(answer))
    result = fetch("https://localhost:1/", proxy=f"127.0.0.1:{proxy}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == (kind, "proxy"), result.error
    assert result.error.message.startswith(f"proxy 127.0.0.1:{proxy}: ") or kind == "proxy-error"
    assert message in result.error.message


def test_a_proxy_that_is_down_is_blamed_and_not_fallen_back_from(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    port = hosts.refused()
    result = fetch("localhost:1", proxy=f"127.0.0.1:{port}", scheme="auto")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("connection-refused", "proxy")
    assert result.error.message == f"proxy 127.0.0.1:{port}: connection refused"
    assert len(result.attempts) == 1  # no http try: it would go through the same proxy


def test_a_silent_proxy_times_out_within_the_connect_timeout(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    from fetcher.loopback import silent

    proxy = hosts.serve(silent())
    started = time.monotonic()
    result = fetch(
        "https://localhost:1/", proxy=f"127.0.0.1:{proxy}", connect_timeout=0.3, timeout=20
    )
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "proxy"), result.error
    assert time.monotonic() - started < 10  # the connect timeout, not the total one


def test_a_target_failing_behind_the_proxy_is_the_targets_fault(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext, ca_file: str
) -> None:
    target = hosts.serve(replies(OK), tls=wrong_name_tls)
    proxy = hosts.serve(proxying([]))
    result = fetch(f"https://localhost:{target}/", cafile=ca_file, proxy=f"127.0.0.1:{proxy}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("tls-error", "tls"), result.error
    # The certificate is not captured by a handshake straight to the proxy's address.
    assert result.tls is not None and result.tls.capture_error == (
        "certificate not captured: through a proxy"
    )


def test_a_proxy_that_does_not_resolve_is_blamed(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    from fetcher.loopback import LoopbackDNS

    dns_port = hosts.serve_dns(LoopbackDNS({}))
    result = fetch("127.0.0.1:1", proxy="proxy.invalid:3128", resolvers=(f"127.0.0.1:{dns_port}",))
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("dns-error", "proxy"), result.error
    assert result.error.message.startswith("proxy proxy.invalid:3128: cannot resolve")


# --- which proxy, from what -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("127.0.0.1:3128", Proxy("127.0.0.1", 3128)),
        ("http://proxy.example", Proxy("proxy.example", 1080)),
        ("http://[::1]:8080/", Proxy("::1", 8080)),
        ("http://a:b@p:1", Proxy("p", 1, "Basic " + base64.b64encode(b"a:b").decode())),
    ],
)
def test_proxy_urls(url: str, proxy: Proxy) -> None:
    assert parse_proxy(url) == proxy


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("socks4://127.0.0.1:1080", "only http://, socks5:// and socks5h:// proxies"),
        ("https://p:443", "only http://, socks5:// and socks5h:// proxies"),
        ("http://p:99999", "bad port"),
        ("http://p:1/path", "expected http://HOST"),
        ("http://", "expected http://HOST"),
    ],
)
def test_bad_proxy_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Config(proxy=url)


def test_the_environment_is_read_only_when_asked() -> None:
    env = {
        "HTTPS_PROXY": "http://secure:1",
        "http_proxy": "http://plain:2",
        "HTTP_PROXY": "http://ignored:3",
        "NO_PROXY": "internal.example, .corp:8080,localhost",
    }
    assert not Proxies(None, False, env)
    proxies = Proxies(None, True, env)
    assert proxies.for_target("https", "example.com", 443) == Proxy("secure", 1)
    assert proxies.for_target("http", "example.com", 80) == Proxy("plain", 2)
    assert proxies.for_target("https", "a.internal.example", 443) is None
    assert proxies.for_target("http", "internal.example", 80) is None
    assert proxies.for_target("http", "x.corp", 8080) is None
    assert proxies.for_target("http", "x.corp", 80) == Proxy("plain", 2)
    assert proxies.for_target("http", "LOCALHOST", 80) is None
    assert proxies.for_target("http", "notinternal.example", 80) == Proxy("plain", 2)
    # HTTP_PROXY in capitals is not read (curl's rule, against CGI's HTTP_PROXY header).
    assert Proxies(None, True, {"HTTP_PROXY": "http://x:1"}).for_target("http", "a", 80) is None
    assert (
        Proxies(None, True, {"https_proxy": "p:1", "no_proxy": "*"}).for_target("https", "a", 443)
        is None
    )
    # -x wins over the environment, NO_PROXY included.
    assert Proxies("p:9", True, env).for_target("http", "localhost", 80) == Proxy("p", 9)


def test_proxy_env_is_validated_and_http2_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "socks4://x:1")
    with pytest.raises(ConfigError, match="only http://, socks5://"):
        Config(proxy_env=True)
    Config()  # off by default: the variable is not even read
    from fetcher.config import Request

    with pytest.raises(ConfigError, match="--http2"):
        Config(proxy="p:1", backend="httpx", request=Request(http2=True))


def test_blame_keeps_an_error_already_on_the_proxy() -> None:
    from fetcher.errors import ConnectError

    proxy = Proxy("p", 1)
    already = ConnectError("proxy p:1: reset", "proxy")
    assert blame_proxy(already, proxy) is already
    moved = blame_proxy(ConnectError("reset", "read"), proxy)
    assert isinstance(moved, FetchError) and (moved.message, moved.phase) == (
        "proxy p:1: reset",
        "proxy",
    )


# --- through a real proxy: proxy.py ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """proxy.py on 127.0.0.1, on a port it picks (written to a file we poll)."""
    pytest.importorskip("proxy", reason="proxy.py is in the dev extra")
    folder = tmp_path_factory.mktemp("proxy")
    port_file = folder / "port"
    command = [
        sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--num-acceptors", "1", "--num-workers", "1",
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(folder)}  # proxy.py keeps its data under ~/.proxy
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield wait_for_port(port_file, process, "proxy.py")
    finally:
        stop(process)


def answered_through(fetch: FetchOne, proxy: str, ca_file: str, *urls: str) -> list[Result]:
    """Each URL fetched through `proxy` is the target's own 200 (its Server: target)."""
    results = []
    for url in urls:
        result = fetch(url, cafile=ca_file, proxy=proxy)
        assert result.status_code == 200, (url, result.error)
        assert result.headers_by_name()["server"] == ["target"]
        results.append(result)
    return results


def wait_for_port(port_file: Path, process: subprocess.Popen[bytes], name: str) -> int:
    """The port a proxy process writes to `port_file` once it listens; the test fails if the
    process exits first, or writes none within PROXY_START_SECONDS."""
    deadline = time.monotonic() + PROXY_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"{name} exited {process.returncode}: {process.stderr.read()[-500:]!r}")
        text = port_file.read_text() if port_file.exists() else ""
        if text.strip().isdigit():
            return int(text)
        time.sleep(0.05)
    pytest.fail(f"{name} wrote no port within {PROXY_START_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a proxy process this module started, and close its stderr pipe."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.stderr is not None:
        process.stderr.close()


def test_through_a_real_proxy(
    hosts: LoopbackHosts,
    fetch: FetchOne,
    real_proxy: int,
    server_tls: ssl.SSLContext,
    ca_file: str,
) -> None:
    plain = hosts.serve(replies(OK))
    secure = hosts.serve(replies(OK), tls=server_tls)
    proxy = f"http://127.0.0.1:{real_proxy}"
    answered_through(
        fetch, proxy, ca_file, f"http://127.0.0.1:{plain}/", f"https://localhost:{secure}/"
    )
    # A target the proxy cannot reach: its answer (502 for http; a refused tunnel for https).
    closed = hosts.refused()
    plain_down = fetch(f"http://127.0.0.1:{closed}/", proxy=proxy)
    assert plain_down.status_code == 502, plain_down.error
    secure_down = fetch(f"https://127.0.0.1:{closed}/", proxy=proxy)
    assert secure_down.error is not None and secure_down.error.kind == "proxy-error"
    assert "502" in secure_down.error.message


def test_the_targets_own_bytes_are_held_to_the_limits_behind_the_proxy(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    proxy = f"127.0.0.1:{hosts.serve(proxying([]))}"
    for url, tls in (("127.0.0.1:{}", None), ("https://localhost:{}/", server_tls)):
        target = hosts.serve(replies(huge), tls=tls)
        result = fetch(url.format(target), cafile=ca_file, proxy=proxy)
        assert result.error is not None
        assert (result.error.kind, result.error.phase) == ("protocol-error", "read"), result.error
