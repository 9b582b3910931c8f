"""-v/--verbose: each request's steps, as curl -v tells them, on both backends."""

from __future__ import annotations

import asyncio
import ssl

from conftest import make_config

from fetcher.engine import Engine
from fetcher.loopback import LoopbackHosts, replies, response
from fetcher.models import Result
from fetcher.targets import Target

OK = response("200 OK")


def traced(line: str, **options: object) -> tuple[Result, list[tuple[str, str]]]:
    """Fetch one line through the engine with a tracer: its Result, and (url, step) told."""
    steps: list[tuple[str, str]] = []
    results: list[Result] = []

    def tell(target: Target, text: str) -> None:
        steps.append((target.url, text))

    async def go() -> None:
        async def sink(result: Result) -> None:
            results.append(result)

        async with Engine(make_config(**options), tracer=tell) as engine:
            await engine.run([line], sink)

    asyncio.run(go())
    return results[0], steps


def test_the_steps_of_a_pinned_https_fetch(
    hosts: LoopbackHosts, backend_name: str, wrong_name_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=wrong_name_tls)
    url = f"https://other.example:{port}/"
    pins = (f"other.example:{port}:127.0.0.1",)
    result, steps = traced(url, backend=backend_name, cafile=ca_file, pins=pins)
    assert result.status_code == 200, result.error
    assert {told for told, _ in steps} == {url}
    texts = [text for _, text in steps]
    assert texts[:3] == [
        "* other.example pinned to 127.0.0.1",
        f"*   Trying 127.0.0.1:{port}...",
        f"* Connected to 127.0.0.1:{port}",
    ]
    assert texts[3].startswith("* TLS connection using TLSv1.")
    assert texts[4] == "> GET / HTTP/1.1"
    assert f"> Host: other.example:{port}" in texts
    assert texts[-2:] == ["* Request written", "< HTTP/1.1 200 OK"]


def test_the_steps_of_a_tunnel_and_of_a_resolved_name(
    hosts: LoopbackHosts, backend_name: str, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    from test_proxy import proxying

    target = hosts.serve(replies(OK), tls=server_tls)
    proxy = hosts.serve(proxying([]))
    url = f"https://localhost:{target}/"
    result, steps = traced(url, backend=backend_name, cafile=ca_file, proxy=f"localhost:{proxy}")
    assert result.status_code == 200, result.error
    texts = [text for _, text in steps]
    assert texts[0].startswith("* localhost resolved to 127.0.0.1")
    assert f"* Connected to 127.0.0.1:{proxy}" in texts
    connect = texts.index(f"> CONNECT localhost:{target} HTTP/1.1")
    assert texts[connect + 2 : connect + 4] == [
        "* Request written",
        "< HTTP/1.1 200 Connection established",
    ]
    assert texts[-1] == "< HTTP/1.1 200 OK"


def test_the_steps_of_a_socks_tunnel(hosts: LoopbackHosts, backend_name: str) -> None:
    from test_socks import socks5

    target = hosts.serve(replies(OK))
    proxy = hosts.serve(socks5([]))
    for scheme, asked, how in (
        ("socks5", "127.0.0.1", "locally"),
        ("socks5h", "localhost", "remotely"),
    ):
        url = f"http://localhost:{target}/"
        result, steps = traced(url, backend=backend_name, proxy=f"{scheme}://127.0.0.1:{proxy}")
        assert result.status_code == 200, result.error
        texts = [text for _, text in steps]
        start = texts.index(f"*   Trying 127.0.0.1:{proxy}...")
        assert texts[start : start + 5] == [
            f"*   Trying 127.0.0.1:{proxy}...",
            f"* SOCKS5 connect to {asked}:{target} ({how} resolved)",
            "* SOCKS5 request granted",
            f"* Connected to 127.0.0.1:{proxy}",
            "> GET / HTTP/1.1",
        ]
        assert texts[0].startswith("* localhost resolved to 127.0.0.1") == (scheme == "socks5")
