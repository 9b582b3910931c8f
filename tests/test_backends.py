"""Each backend against real scripted servers on 127.0.0.1 (see the backend_name fixture)."""

from __future__ import annotations

import ssl
import time

from conftest import FetchOne

from fetcher.http1 import MAX_HEADERS
from fetcher.loopback import LoopbackHosts, delayed, drips, replies, response, silent

OK = response(
    "200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
)


def test_normal_response(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(OK))
    result = fetch(f"127.0.0.1:{port}/path?q=1")
    assert result.error is None
    assert (result.status_code, result.reason, result.http_version) == (200, "OK", "1.1")
    assert result.headers_by_name()["set-cookie"] == ["a=1", "b=2"]
    assert result.host_ip == "127.0.0.1"
    record = result.to_record()
    assert record["url"] == f"http://127.0.0.1:{port}/path?q=1"
    assert record["timings_ms"]["total"] > 0
    assert record["timings_ms"]["connect"] is not None
    assert record["timings_ms"]["tls"] is None


def test_request_carries_method_host_and_user_agent(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    seen: list[bytes] = []

    async def record(reader, writer):  # type: ignore[no-untyped-def]
        from fetcher.loopback import read_request

        seen.append(await read_request(reader))
        writer.write(OK)

    port = hosts.serve(record)
    result = fetch(f"localhost:{port}/x", method="HEAD", headers=(("X-Extra", "1"),))
    assert result.status_code == 200
    request = seen[0].decode()
    assert request.startswith("HEAD /x HTTP/1.1\r\n")
    assert f"\r\nhost: localhost:{port}\r\n" in request.lower()
    assert "user-agent: afetch/" in request.lower()
    assert "x-extra: 1" in request.lower()


def test_redirect_is_reported_not_followed(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(response("301 Moved Permanently", [("Location", "/new")])))
    result = fetch(f"127.0.0.1:{port}/old")
    assert result.status_code == 301
    assert result.headers_by_name()["location"] == ["/new"]


def test_tls_verified_with_ca(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=server_tls)
    result = fetch(f"https://localhost:{port}/", cafile=ca_file)
    assert result.error is None and result.status_code == 200
    assert result.timings["tls"] > 0


def test_tls_untrusted_certificate(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext
) -> None:
    port = hosts.serve(replies(OK), tls=server_tls)
    result = fetch(f"https://localhost:{port}/")
    assert result.error is not None and result.error.kind == "tls-error"
    assert "certificate" in result.error.message


def test_tls_wrong_name(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=wrong_name_tls)
    result = fetch(f"https://localhost:{port}/", cafile=ca_file)
    assert result.error is not None and result.error.kind == "tls-error"


def test_insecure_skips_verification(
    hosts: LoopbackHosts, fetch: FetchOne, wrong_name_tls: ssl.SSLContext
) -> None:
    port = hosts.serve(replies(OK), tls=wrong_name_tls)
    assert fetch(f"https://localhost:{port}/", verify=False).status_code == 200


def test_plain_http_on_https_target(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(OK, wait_for_request=False))
    result = fetch(f"https://127.0.0.1:{port}/", verify=False)
    assert result.error is not None and result.error.kind == "tls-error"


def test_refused(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    result = fetch(f"127.0.0.1:{hosts.refused()}")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("connection-refused", "connect")


def test_dns_failure(fetch: FetchOne) -> None:
    result = fetch("no-such-host.invalid")
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("dns-error", "dns")


def test_silent_server_times_out_at_the_deadline(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(silent())
    started = time.monotonic()
    result = fetch(f"127.0.0.1:{port}", timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "read")
    assert "within 0.5 s" in result.error.message
    assert 0.4 < elapsed < 3.0


def test_dripping_server_cannot_outlast_the_total_deadline(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    port = hosts.serve(drips(OK, 0.05))  # ~5 s for the whole head, a byte every 50 ms
    started = time.monotonic()
    result = fetch(f"127.0.0.1:{port}", timeout=0.6)
    assert result.error is not None and result.error.kind == "timeout"
    assert time.monotonic() - started < 3.0


def test_slow_but_in_time(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(delayed(OK, 0.2))
    assert fetch(f"127.0.0.1:{port}", timeout=5).status_code == 200


def test_garbage_reply(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"SSH-2.0-OpenSSH_9.6\r\n"))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "protocol-error"


def test_oversized_headers(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    flood = b"HTTP/1.1 200 OK\r\n" + b"X-Flood: 1\r\n" * (MAX_HEADERS * 2) + b"\r\n"
    port = hosts.serve(replies(flood))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "protocol-error"


def test_close_without_a_byte(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b""))
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None and result.error.kind == "connection-error"


def test_reset_mid_headers(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    async def reset(reader, writer):  # type: ignore[no-untyped-def]
        from fetcher.loopback import read_request

        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Partial: ")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    port = hosts.serve(reset)
    result = fetch(f"127.0.0.1:{port}")
    assert result.error is not None
    assert result.error.kind == "connection-error"


def test_interim_then_final(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK))
    assert fetch(f"127.0.0.1:{port}").status_code == 200


def test_http10_and_bare_lf(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(b"HTTP/1.0 200 OK\nServer: old\n\nbody"))
    result = fetch(f"127.0.0.1:{port}")
    assert (result.http_version, result.status_code) == ("1.0", 200)
    assert result.headers == [("Server", "old")]
