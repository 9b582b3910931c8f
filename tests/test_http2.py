"""--http2 on the httpx backend: ALPN negotiation against a loopback h2 server, and the usage
errors around the flag."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys

import pytest
import trustme
from click.testing import CliRunner
from conftest import FetchOne, collect, make_config

from fetcher.cli import afetch
from fetcher.config import Config, ConfigError, Request
from fetcher.loopback import LoopbackHosts, Script, read_request, response
from fetcher.models import Result

h2_config = pytest.importorskip("h2.config")
h2_connection = pytest.importorskip("h2.connection")
h2_events = pytest.importorskip("h2.events")

OK = response("200 OK", [("Content-Type", "text/plain")])
H2_HEADERS = [
    (":status", "200"),
    ("content-type", "text/plain"),
    ("set-cookie", "a=1"),
    ("set-cookie", "b=2"),
]


@pytest.fixture(scope="module")
def h2_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context for localhost that offers h2 first, then http/1.1, by ALPN."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def h2_or_http1(requests: list[dict[str, str]], delay: float = 0.0) -> Script:
    """Answer in HTTP/2 if ALPN chose h2 (recording each request's headers), else HTTP/1.1.
    The HTTP/2 answer comes `delay` seconds after the request (SETTINGS go out at once)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            await read_request(reader)
            writer.write(OK)
            await writer.drain()
            return
        conn = h2_connection.H2Connection(
            h2_config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2_events.RequestReceived):
                    requests.append(dict(event.headers))
                    await asyncio.sleep(delay)
                    conn.send_headers(event.stream_id, H2_HEADERS)
                    conn.send_data(event.stream_id, b"hello\n", end_stream=True)
            writer.write(conn.data_to_send())
            await writer.drain()

    return script


@pytest.fixture
def httpx_fetch() -> FetchOne:
    """fetch(line, **options) -> Result on the httpx backend (--http2 exists only there)."""

    def run(line: str, **options: object) -> Result:
        [result] = collect([line], make_config(backend="httpx", **options))
        return result

    return run


def test_http2_negotiated_by_alpn(
    hosts: LoopbackHosts, httpx_fetch: FetchOne, h2_tls: ssl.SSLContext, ca_file: str
) -> None:
    seen: list[dict[str, str]] = []
    port = hosts.serve(h2_or_http1(seen), tls=h2_tls)
    result = httpx_fetch(
        f"https://localhost:{port}/p?q=1",
        cafile=ca_file,
        http2=True,
        user_agent="probe/2",
        headers=(("X-Extra", "1"),),
    )
    assert result.error is None
    assert (result.status_code, result.reason, result.http_version) == (200, "", "2")
    assert result.headers_by_name()["set-cookie"] == ["a=1", "b=2"]
    assert result.host_ip == "127.0.0.1"
    assert result.timings["tls"] is not None and result.timings["connect"] is not None
    [request] = seen
    assert request[":method"] == "GET" and request[":path"] == "/p?q=1"
    assert request[":authority"] == f"localhost:{port}"
    assert request["user-agent"] == "probe/2" and request["x-extra"] == "1"
    assert "connection" not in request  # forbidden in HTTP/2, left out


def test_http2_ttfb_is_to_the_response_head(
    hosts: LoopbackHosts, httpx_fetch: FetchOne, h2_tls: ssl.SSLContext, ca_file: str
) -> None:
    """The server's SETTINGS frame arrives at once, its answer 0.3 s later: ttfb (from httpcore's
    trace extension) is to this stream's response head, not to the first bytes read."""
    port = hosts.serve(h2_or_http1([], delay=0.3), tls=h2_tls)
    result = httpx_fetch(f"https://localhost:{port}/", cafile=ca_file, http2=True)
    assert (result.status_code, result.http_version) == (200, "2")
    assert result.timings["ttfb"] >= 250
    assert result.timings["ttfb"] <= result.timings["total"]


def h2_closes_after_the_request(settings: bool) -> Script:
    """Speak h2 up to the request (sending SETTINGS first if `settings`), then close. It reads
    everything the client sends first: a close with unread bytes would be a reset instead."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2_connection.H2Connection(h2_config.H2Configuration(client_side=False))
        conn.initiate_connection()
        if settings:
            writer.write(conn.data_to_send())
            await writer.drain()
        # The client's ACK of our SETTINGS may come after its request: wait for both, or the
        # ACK would be unread at the close and the kernel would send a reset, not a FIN.
        requested, acked = False, not settings
        for _ in range(20):  # a few frames; the loop is bounded, the request comes in one or two
            data = await reader.read(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                requested |= isinstance(event, h2_events.RequestReceived)
                acked |= isinstance(event, h2_events.SettingsAcknowledged)
            if requested and acked:
                break

    return script


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            False, ("connection-error", "connection closed without a response"), id="first"
        ),
        pytest.param(True, ("protocol-error", "server disconnected"), id="after-settings"),
    ],
)
def test_http2_server_closes_without_an_answer(
    hosts: LoopbackHosts,
    httpx_fetch: FetchOne,
    h2_tls: ssl.SSLContext,
    ca_file: str,
    settings: bool,
    expected: tuple[str, str],
) -> None:
    """Closed before a single frame: as on HTTP/1 (and raw). After frames: h2's own verdict."""
    port = hosts.serve(h2_closes_after_the_request(settings), tls=h2_tls)
    result = httpx_fetch(f"https://localhost:{port}/", cafile=ca_file, http2=True)
    assert result.error is not None
    assert (result.error.kind, result.error.message) == expected
    assert result.error.phase == "read"


def test_http2_with_insecure(
    hosts: LoopbackHosts, httpx_fetch: FetchOne, h2_tls: ssl.SSLContext
) -> None:
    port = hosts.serve(h2_or_http1([]), tls=h2_tls)
    untrusted = httpx_fetch(f"https://localhost:{port}/", http2=True)
    assert untrusted.error is not None and untrusted.error.kind == "tls-error"
    insecure = httpx_fetch(f"https://localhost:{port}/", http2=True, verify=False)
    assert (insecure.status_code, insecure.http_version) == (200, "2")


def test_without_the_flag_the_same_server_speaks_http11(
    hosts: LoopbackHosts, httpx_fetch: FetchOne, h2_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(h2_or_http1([]), tls=h2_tls)
    result = httpx_fetch(f"https://localhost:{port}/", cafile=ca_file)
    assert (result.status_code, result.http_version) == (200, "1.1")


def test_plain_http_stays_http11(hosts: LoopbackHosts, httpx_fetch: FetchOne) -> None:
    """HTTP/2 is offered by ALPN, which needs TLS; a plain http:// target gets HTTP/1.1."""
    port = hosts.serve(h2_or_http1([]))
    result = httpx_fetch(f"http://127.0.0.1:{port}/", http2=True)
    assert (result.status_code, result.http_version) == (200, "1.1")


def test_http2_needs_the_httpx_backend() -> None:
    with pytest.raises(ConfigError, match="--backend httpx"):
        Config(request=Request(http2=True), backend="raw")


def test_http2_needs_the_h2_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2", None)  # `import h2` now raises ImportError
    with pytest.raises(ConfigError, match=r"afetch\[http2\]"):
        Config(request=Request(http2=True), backend="httpx")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--http2", "x"], "--backend httpx", id="raw-backend"),
        pytest.param(["--http2", "--backend", "raw", "x"], "--backend httpx", id="explicit-raw"),
    ],
)
def test_http2_usage_errors_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(afetch, args, catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_http2_without_h2_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2", None)  # `import h2` now raises ImportError
    result = CliRunner().invoke(
        afetch, ["--backend", "httpx", "--http2", "x"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "afetch: error: --http2 needs the h2 package: pip install 'afetch[http2]'\n"
    )


def test_cli_httpx_backend_with_http2(
    hosts: LoopbackHosts, h2_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(h2_or_http1([]), tls=h2_tls)
    result = CliRunner().invoke(
        afetch,
        [
            "--backend",
            "httpx",
            "--http2",
            "--cacert",
            ca_file,
            "--json",
            f"https://localhost:{port}",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["backend"], record["http_version"], record["status_code"]) == ("httpx", "2", 200)


def test_two_targets_share_one_http2_connection(
    hosts: LoopbackHosts, h2_tls: ssl.SSLContext, ca_file: str
) -> None:
    """Same origin, in flight together: one TLS connection, two streams. The second fetch never
    connected, so its peer address comes from the response's network stream."""
    seen: list[dict[str, str]] = []
    port = hosts.serve(h2_or_http1(seen), tls=h2_tls)
    config = make_config(backend="httpx", http2=True, cafile=ca_file, concurrency=2)
    lines = [f"https://localhost:{port}/one", f"https://localhost:{port}/two"]

    results = collect(lines, config)
    assert [(r.status_code, r.http_version, r.host_ip) for r in results] == [
        (200, "2", "127.0.0.1")
    ] * 2
    assert sorted(request[":path"] for request in seen) == ["/one", "/two"]
    # the fetch that reused the connection reports its handshake's facts too
    facts = [r.to_record()["tls"] for r in results]
    assert facts[0] == facts[1] and facts[0]["alpn"] == "h2" and facts[0]["verified"] is True
