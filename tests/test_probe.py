"""The probe features against real loopback servers, on every backend (see backend_name):
scheme probing, ports, HTTP/1.0, redirects, retries, per-host and rate pacing."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FetchMany, FetchOne

from fetcher import policy
from fetcher.cli import afetch
from fetcher.loopback import LoopbackHosts, read_request, recording, replies, response, silent

OK = response("200 OK", [("Content-Type", "text/plain")])


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait milliseconds here, not the real half second and up."""
    monkeypatch.setattr(policy, "RETRY_BASE", 0.01)


class Counting:
    """A script that counts its connections and answers the n-th one with `answers(n)`."""

    def __init__(self, answers: object) -> None:
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = self.connections
        self.requests.append(await read_request(reader))
        data = self.answers(n) if callable(self.answers) else self.answers
        if data is None:
            await asyncio.sleep(60)  # silent
        writer.write(data)
        await writer.drain()


# --- --scheme auto -------------------------------------------------------------------------


def test_auto_prefers_https_when_it_answers(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=server_tls)
    result = fetch(f"localhost:{port}", scheme="auto", cafile=ca_file)
    assert result.error is None and result.status_code == 200
    assert result.to_record()["url"] == f"https://localhost:{port}/"


def test_auto_falls_back_to_http_after_a_tls_failure(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(OK, wait_for_request=False))  # plain HTTP: the handshake fails
    result = fetch(f"127.0.0.1:{port}", scheme="auto")
    assert result.error is None and result.status_code == 200
    assert result.to_record()["url"] == f"http://127.0.0.1:{port}/"


def test_auto_falls_back_after_refused_and_reports_the_http_error(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    port = hosts.refused()
    result = fetch(f"127.0.0.1:{port}", scheme="auto")
    assert result.error is not None and result.error.kind == "connection-refused"
    assert result.to_record()["url"] == f"http://127.0.0.1:{port}/"


def test_auto_does_not_fall_back_after_a_timeout(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(silent(), tls=server_tls)  # https connects, then never answers
    result = fetch(f"localhost:{port}", scheme="auto", timeout=0.3, cafile=ca_file)
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("timeout", "read")
    assert result.to_record()["url"] == f"https://localhost:{port}/"


def test_auto_falls_back_when_the_tls_handshake_times_out(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    script = Counting(OK)  # plain HTTP that waits for a request line a ClientHello never ends
    port = hosts.serve(script)
    result = fetch(f"127.0.0.1:{port}", scheme="auto", connect_timeout=0.3, timeout=3)
    assert result.error is None and result.status_code == 200
    assert result.to_record()["url"] == f"http://127.0.0.1:{port}/"
    assert script.connections == 2


def test_auto_leaves_an_explicit_scheme_alone(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.refused()
    result = fetch(f"https://127.0.0.1:{port}/", scheme="auto")
    assert result.error is not None and result.to_record()["url"].startswith("https://")


class TLSThenPlain:
    """The first `tls_connections` connections speak TLS with `tls`, every later one plain HTTP:
    one port playing a host's 443 and 80, so --scheme auto can fall back onto it."""

    def __init__(self, tls: ssl.SSLContext, tls_connections: int = 1) -> None:
        self.tls = tls
        self.tls_connections = tls_connections
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections <= self.tls_connections:
            # Before the first read: the ClientHello must reach the TLS layer, not the reader.
            await writer.start_tls(self.tls)
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


def test_auto_records_why_https_was_not_used(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext
) -> None:
    """A certificate nobody trusts: the fallback to http answers, and the record keeps the
    https attempt's error and TLS facts instead of hiding them. After the failed verification
    one more (unverified) handshake captures the certificate served: TLS twice, then plain."""
    script = TLSThenPlain(server_tls, tls_connections=2)  # the test CA, not trusted here
    port = hosts.serve(script)
    result = fetch(f"127.0.0.1:{port}", scheme="auto")
    assert (result.status_code, result.error) == (200, None)
    record = result.to_record()
    assert record["url"] == f"http://127.0.0.1:{port}/"
    https, http = record["attempts"]
    assert https["url"] == f"https://127.0.0.1:{port}/"
    assert (https["error"]["kind"], https["error"]["phase"]) == ("tls-error", "tls")
    assert "certificate verify failed" in https["error"]["message"]
    assert https["tls"]["verify_error"] == "unknown-issuer"
    assert https["tls"]["cert"]["sans"] == ["localhost", "127.0.0.1"]
    assert record["tls"] == https["tls"]
    assert http == {"url": f"http://127.0.0.1:{port}/", "error": None, "tls": None}
    assert script.connections == 3


def test_auto_attempts_when_https_answers_or_both_fail(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    port = hosts.serve(replies(OK), tls=server_tls)
    answered = fetch(f"localhost:{port}", scheme="auto", cafile=ca_file).to_record()
    assert answered["attempts"] == [
        {"url": f"https://localhost:{port}/", "error": None, "tls": answered["tls"]}
    ]
    assert answered["tls"]["verified"] is True

    refused = hosts.refused()
    failed = fetch(f"127.0.0.1:{refused}", scheme="auto").to_record()
    assert [(a["url"].split(":")[0], a["error"]["kind"]) for a in failed["attempts"]] == [
        ("https", "connection-refused"),
        ("http", "connection-refused"),
    ]
    assert failed["error"] == failed["attempts"][-1]["error"]


def test_attempts_are_empty_without_probing(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(OK))
    assert fetch(f"127.0.0.1:{port}").to_record()["attempts"] == []
    explicit = fetch(f"http://127.0.0.1:{port}/", scheme="auto").to_record()
    assert explicit["attempts"] == []


def test_text_output_says_which_scheme_answered_and_why(
    hosts: LoopbackHosts, server_tls: ssl.SSLContext
) -> None:
    port = hosts.serve(TLSThenPlain(server_tls, tls_connections=2))  # a capture handshake too
    result = CliRunner().invoke(afetch, ["--scheme", "auto", f"127.0.0.1:{port}"])
    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.stderr
    assert lines[0].startswith(
        f"127.0.0.1:{port} scheme > http (https failed: tls-error: certificate verify failed"
    )
    # the https attempt's certificate, kept in sight though http answered
    assert lines[1].startswith(f"127.0.0.1:{port} tls > TLSv1.3 ")
    assert lines[1].endswith(", not verified: unknown-issuer")
    assert lines[2:] == [
        f"127.0.0.1:{port} header > HTTP/1.1 200 OK",
        f"127.0.0.1:{port} header > Content-Type: text/plain",
        f"127.0.0.1:{port} header > Content-Length: 6",
        f"127.0.0.1:{port} header > Connection: close",
    ]


def test_text_output_when_neither_scheme_answered(hosts: LoopbackHosts) -> None:
    port = hosts.refused()
    result = CliRunner().invoke(afetch, ["--scheme", "auto", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"127.0.0.1:{port} scheme > http (https failed: connection-refused: connection refused)",
        f"127.0.0.1:{port} error > connection-refused: connection refused",
    ]


# --- --ports -------------------------------------------------------------------------------


def test_ports_expand_a_bare_host(hosts: LoopbackHosts, fetch_many: FetchMany) -> None:
    first, second, refused = hosts.serve(replies(OK)), hosts.serve(replies(OK)), hosts.refused()
    results = fetch_many(
        ["127.0.0.1", f"127.0.0.1:{first}", f"http://localhost:{first}/"],
        ports=(first, second, refused),
    )
    records = sorted((r.label, r.status_code, r.error and r.error.kind) for r in results)
    assert records == sorted(
        [
            (f"127.0.0.1:{first}", 200, None),
            (f"127.0.0.1:{second}", 200, None),
            (f"127.0.0.1:{refused}", None, "connection-refused"),
            (f"127.0.0.1:{first}", 200, None),  # names its port: not expanded
            (f"http://localhost:{first}/", 200, None),  # names its scheme: not expanded
        ]
    )
    assert {r.input for r in results} == {
        "127.0.0.1",
        f"127.0.0.1:{first}",
        f"http://localhost:{first}/",
    }
    assert sum(r.expanded for r in results) == 3


def test_resume_fetches_only_the_ports_a_line_still_lacks(
    hosts: LoopbackHosts, tmp_path: Path
) -> None:
    """An interrupted --ports run recorded some ports of a line: --resume fetches the others,
    and a line given twice keeps its two sets of records."""
    seen: list[bytes] = []
    first, second, third = (hosts.serve(recording(OK, seen)) for _ in range(3))
    out = tmp_path / "out.jsonl"
    done = {"input": "127.0.0.1", "port": first, "status_code": 200}
    torn = '{"input": "127.0.0.1", "po'  # a killed run's last line: cut off, not counted
    out.write_text(json.dumps(done) + "\n" + torn)
    ports = f"{first},{second},{third}"
    result = CliRunner().invoke(
        afetch,
        ["--ports", ports, "--resume", "-o", str(out), "-q", "127.0.0.1", "127.0.0.1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter((r["input"], r["port"]) for r in records) == {
        ("127.0.0.1", first): 2,
        ("127.0.0.1", second): 2,
        ("127.0.0.1", third): 2,
    }
    assert len(seen) == 5


# --- --http1.0 -----------------------------------------------------------------------------


def test_http10_request_line(hosts: LoopbackHosts, fetch: FetchOne, backend_name: str) -> None:
    if backend_name == "httpx":
        pytest.skip("httpx sends HTTP/1.1 only: --http1.0 with it is a usage error (test_cli)")
    script = Counting(OK)
    port = hosts.serve(script)
    assert fetch(f"127.0.0.1:{port}/x", http_version="1.0").status_code == 200
    assert script.requests[0].startswith(b"GET /x HTTP/1.0\r\n")


# --- -L / --max-redirects ------------------------------------------------------------------


def redirect(status: str, location: str) -> bytes:
    return response(status, [("Location", location)])


def router(routes: dict[str, bytes]) -> Counting:
    """Answer by request path."""

    def answer(n: int) -> bytes:
        path = script.requests[-1].split(b" ")[1].decode()
        return routes.get(path, response("404 Not Found"))

    script = Counting(answer)
    return script


def test_follow_a_chain_of_relative_and_absolute_redirects(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    end = hosts.serve(router({"/c?x=1": OK}))
    start = hosts.serve(
        router(
            {
                "/a/b": redirect("302 Found", "../next"),  # relative to /a/b: /next
                "/next": redirect("301 Moved Permanently", f"http://localhost:{end}/c?x=1"),
            }
        )
    )
    result = fetch(f"127.0.0.1:{start}/a/b", follow_redirects=True)
    assert result.error is None and result.status_code == 200
    record = result.to_record()
    assert record["url"] == f"http://127.0.0.1:{start}/a/b"
    assert record["final_url"] == f"http://localhost:{end}/c?x=1"
    assert record["redirects"] == [
        {"url": f"http://127.0.0.1:{start}/a/b", "status_code": 302, "location": "../next"},
        {
            "url": f"http://127.0.0.1:{start}/next",
            "status_code": 301,
            "location": f"http://localhost:{end}/c?x=1",
        },
    ]


def test_redirect_loop_ends_in_too_many_redirects(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    script = router({"/loop": redirect("307 Temporary Redirect", "/loop")})
    port = hosts.serve(script)
    result = fetch(f"127.0.0.1:{port}/loop", follow_redirects=True, max_redirects=3)
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("too-many-redirects", "redirect")
    assert len(result.redirects) == 3 and script.connections == 4
    assert result.status_code is None


def test_max_redirects_zero_refuses_the_first(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(redirect("308 Permanent Redirect", "/elsewhere")))
    result = fetch(f"127.0.0.1:{port}/", follow_redirects=True, max_redirects=0)
    assert result.error is not None and result.error.kind == "too-many-redirects"


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("ftp://files.example/x", id="ftp"),
        pytest.param("mailto:root@example.com", id="mailto"),
    ],
)
def test_only_http_redirects_are_followed(
    hosts: LoopbackHosts, fetch: FetchOne, location: str, backend_name: str
) -> None:
    port = hosts.serve(replies(redirect("302 Found", location)))
    result = fetch(f"127.0.0.1:{port}/", follow_redirects=True)
    assert result.error is None and result.status_code == 302
    assert result.redirects == [] and result.final_url == f"http://127.0.0.1:{port}/"


def test_bad_location_is_a_protocol_error(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    port = hosts.serve(replies(redirect("302 Found", "http://bad host/")))
    result = fetch(f"127.0.0.1:{port}/", follow_redirects=True)
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == ("protocol-error", "redirect")


def test_redirects_are_reported_not_followed_without_L(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    port = hosts.serve(replies(redirect("302 Found", "/next")))
    result = fetch(f"127.0.0.1:{port}/")
    assert result.status_code == 302 and result.to_record()["redirects"] == []


# --- --retries -----------------------------------------------------------------------------


def test_retries_recover_from_dropped_connections(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    script = Counting(lambda n: b"" if n <= 2 else OK)  # close at once twice, then answer
    port = hosts.serve(script)
    result = fetch(f"127.0.0.1:{port}", retries=2)
    assert result.error is None and result.status_code == 200
    assert script.connections == 3


def test_retries_give_up_with_the_last_error(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    script = Counting(b"")
    port = hosts.serve(script)
    result = fetch(f"127.0.0.1:{port}", retries=1)
    assert result.error is not None and result.error.kind == "connection-error"
    assert script.connections == 2


def test_timeouts_are_retried(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    script = Counting(lambda n: None if n == 1 else OK)
    port = hosts.serve(script)
    result = fetch(f"127.0.0.1:{port}", retries=1, timeout=0.3)
    assert result.status_code == 200 and script.connections == 2


def test_http_statuses_are_never_retried(hosts: LoopbackHosts, fetch: FetchOne) -> None:
    script = Counting(response("503 Service Unavailable"))
    port = hosts.serve(script)
    assert fetch(f"127.0.0.1:{port}", retries=3).status_code == 503
    assert script.connections == 1


# --- --per-host and --rate -----------------------------------------------------------------


def test_per_host_caps_concurrent_requests_to_one_host(
    hosts: LoopbackHosts, fetch_many: FetchMany
) -> None:
    in_flight = peak = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await read_request(reader)
            await asyncio.sleep(0.1)
            writer.write(OK)
            await writer.drain()
        finally:
            in_flight -= 1

    port = hosts.serve(slow)
    results = fetch_many([f"127.0.0.1:{port}/{i}" for i in range(8)], per_host=2, concurrency=8)
    assert [r.status_code for r in results] == [200] * 8
    assert peak == 2


def test_rate_spaces_request_starts(hosts: LoopbackHosts, fetch_many: FetchMany) -> None:
    port = hosts.serve(replies(OK))
    started = time.monotonic()
    results = fetch_many([f"127.0.0.1:{port}/{i}" for i in range(6)], rate=20, concurrency=6)
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in results)
    assert elapsed >= 5 / 20 * 0.8  # 6 starts 50 ms apart: at least 250 ms, with margin
