"""--audit end to end, on loopback and both backends: the Origin it sends, the plain-http route
it learns (and the one extra request it makes for it), the record's `audit`, the text line,
the CSV columns, the --stats grades and --min-grade. The grader's own rules: test_audit.py."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import replace
from typing import Any

import pytest
import trustme
from click.testing import CliRunner
from conftest import StubBackend, collect, make_config

from fetcher.audit import AUDIT_ORIGIN
from fetcher.cli import afetch
from fetcher.config import Config
from fetcher.http1 import ResponseHead
from fetcher.loopback import LoopbackDNS, LoopbackHosts, Script, recording, replies, response
from fetcher.models import Result, Trace
from fetcher.targets import Target

# A response MDN grades A+ over https: every header a bonus or a pass, no cookie.
HARDENED = [
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Strict-Transport-Security", "max-age=31536000"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
# What a bare server sends: MDN's penalties for no CSP, no X-Content-Type-Options, no
# X-Frame-Options, no HSTS.
BARE = [("Content-Type", "text/html")]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(afetch, ["-q", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def records(out: str) -> dict[str, dict[str, Any]]:
    return {record["input"]: record for record in map(json.loads, out.splitlines())}


def plain_redirect(location: str, seen: list[bytes] | None = None) -> Script:
    """A plain-http port answering 301 to `location`. A TLS ClientHello (first byte 0x16) gets
    the same bytes at once, which no TLS client takes for a ServerHello: --scheme auto's https
    try fails fast and the fallback comes here over http."""
    data = response("301 Moved Permanently", [("Location", location)])

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(1)
        if first != b"\x16":
            head = first + await reader.readuntil(b"\r\n\r\n")
            if seen is not None:
                seen.append(head)
        writer.write(data)
        await writer.drain()

    return script


@pytest.fixture(scope="module")
def hardened_https(hosts: LoopbackHosts, server_tls: ssl.SSLContext) -> int:
    return hosts.serve(replies(response("200 OK", HARDENED)), tls=server_tls)


def audited(backend: str = "raw", **request: Any) -> Config:
    """make_config's Config with --audit on (so --scheme auto) and `request` fields set."""
    config = make_config(backend=backend)
    return replace(config, request=replace(config.request, audit=True, **request))


def fetch_audited(backend: str, line: str, **request: Any) -> Result:
    """One target through the engine and a real backend, under --audit."""
    (result,) = collect([line], audited(backend, **request))
    return result


def test_the_origin_header_is_sent_and_judged(hosts: LoopbackHosts, backend_name: str) -> None:
    """MDN judges CORS by the answer to a request with Origin: under --audit every request
    carries ours, so a server that reflects it with credentials is caught (-50)."""
    seen: list[bytes] = []
    reflecting = [
        ("Access-Control-Allow-Origin", AUDIT_ORIGIN),
        ("Access-Control-Allow-Credentials", "true"),
    ]
    port = hosts.serve(recording(response("200 OK", reflecting), seen))
    url = f"http://127.0.0.1:{port}/"
    code, out, err = invoke("--backend", backend_name, "--audit", "--json", url)
    assert code == 0, err
    assert f"\r\nOrigin: {AUDIT_ORIGIN}\r\n".encode() in seen[0]
    cors = records(out)[url]["audit"]["tests"]["cross-origin-resource-sharing"]
    assert cors["result"] == "cross-origin-resource-sharing-implemented-with-universal-access"
    assert cors["modifier"] == -50
    # Without --audit: no Origin, and the record's audit is null.
    code, out, err = invoke("--backend", backend_name, "--json", url)
    assert b"Origin" not in seen[1]
    assert records(out)[url]["audit"] is None


def test_an_origin_given_with_h_is_sent_instead_and_judged(
    hosts: LoopbackHosts, backend_name: str
) -> None:
    seen: list[bytes] = []
    mine = "https://mine.example"
    allow = [("Access-Control-Allow-Origin", mine), ("Access-Control-Allow-Credentials", "true")]
    port = hosts.serve(recording(response("200 OK", allow), seen))
    url = f"http://127.0.0.1:{port}/"
    code, out, err = invoke(
        "--backend", backend_name, "--audit", "--json", "-H", f"Origin: {mine}", url
    )
    assert code == 0, err
    assert seen[0].count(b"Origin:") == 1 and f"Origin: {mine}".encode() in seen[0]
    cors = records(out)[url]["audit"]["tests"]["cross-origin-resource-sharing"]
    assert cors["result"] == "cross-origin-resource-sharing-implemented-with-universal-access"


def test_a_bare_host_that_speaks_only_http_is_graded_where_its_redirect_ends(
    hosts: LoopbackHosts, hardened_https: int, ca_file: str, backend_name: str
) -> None:
    """Under --audit a bare host is tried over https first (--scheme auto); a port that speaks
    only http is the fallback, and its route is the redirection test's: no extra request."""
    seen: list[bytes] = []
    http_port = hosts.serve(plain_redirect(f"https://127.0.0.1:{hardened_https}/", seen))
    line = f"127.0.0.1:{http_port}"
    code, out, err = invoke(
        "--backend", backend_name, "--audit", "--cacert", ca_file, "--json", line
    )
    assert code == 0, err
    record = records(out)[line]
    assert [a["url"].partition(":")[0] for a in record["attempts"]] == ["https", "http"]
    assert record["final_url"] == f"https://127.0.0.1:{hardened_https}/"
    tests = record["audit"]["tests"]
    assert tests["redirection"]["result"] == "redirection-to-https"
    assert tests["strict-transport-security"]["modifier"] == 0  # graded as the https answer
    assert record["audit"]["grade"] == "A+"
    assert len(seen) == 1  # the http request, once: the probe is the fetch itself


def test_a_redirect_to_another_host_costs_five(
    hosts: LoopbackHosts, ca: trustme.CA, ca_file: str, backend_name: str
) -> None:
    """MDN wants http to redirect to https on the same host first (names via loopback DNS)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("www.site.test").configure_cert(tls)
    https_port = hosts.serve(replies(response("200 OK", HARDENED)), tls=tls)
    http_port = hosts.serve(plain_redirect(f"https://www.site.test:{https_port}/"))
    names = {"site.test": ["127.0.0.1"], "www.site.test": ["127.0.0.1"]}
    dns = hosts.serve_dns(LoopbackDNS(names))
    line = f"site.test:{http_port}"
    code, out, err = invoke(
        "--backend", backend_name, "--audit", "--cacert", ca_file, "--resolver",
        f"127.0.0.1:{dns}", "--json", line,
    )  # fmt: skip
    assert code == 0, err
    redirection = records(out)[line]["audit"]["tests"]["redirection"]
    assert (redirection["result"], redirection["modifier"]) == (
        "redirection-off-host-from-http",
        -5,
    )


@pytest.mark.parametrize(
    ("http_side", "expected"),
    [
        pytest.param("to-https", ("redirection-to-https", 0), id="redirects"),
        pytest.param("stays", ("redirection-missing", -20), id="no-redirect"),
        pytest.param("to-http", ("redirection-not-to-https", -20), id="to-http"),
        pytest.param("loop", ("redirection-not-to-https", -20), id="loop"),
        pytest.param("refused", ("redirection-not-needed-no-http", 0), id="no-http"),
        pytest.param("bad-cert", ("redirection-invalid-cert", -20), id="bad-cert"),
    ],
)
def test_a_bare_host_that_answers_over_https_is_probed_over_http(
    hosts: LoopbackHosts,
    hardened_https: int,
    wrong_name_tls: ssl.SSLContext,
    ca_file: str,
    backend_name: str,
    http_side: str,
    expected: tuple[str, int],
) -> None:
    """MDN's redirection test: when https answered, http://host/ on the http port is asked
    too (the port is `audit_http_port` here, 80 in a real run), following its redirects."""
    seen: list[bytes] = []
    if http_side == "refused":
        http_port = hosts.refused()
    elif http_side == "stays":
        http_port = hosts.serve(recording(response("200 OK", BARE), seen))
    else:
        to = {
            "to-https": f"https://127.0.0.1:{hardened_https}/",
            "to-http": f"http://127.0.0.1:{hosts.serve(replies(response('200 OK', BARE)))}/",
            "loop": "/again",  # to itself: -L gives up after --max-redirects, as MDN does
            "bad-cert": f"https://127.0.0.1:{hosts.serve(replies(response()), wrong_name_tls)}/",
        }[http_side]
        http_port = hosts.serve(plain_redirect(to, seen))
    line = f"127.0.0.1:{hardened_https}/"
    result = fetch_audited(backend_name, line, cafile=ca_file, audit_http_port=http_port)
    assert result.error is None and result.audit is not None
    redirection = result.audit.tests["redirection"]
    assert (redirection.result, redirection.modifier) == expected
    if http_side != "refused":
        assert seen[0].startswith(b"GET / HTTP/1.1\r\n")  # the probe went to http://host/
    # The record is the https fetch: the probe shows only in the redirection result.
    assert result.final_url == f"https://127.0.0.1:{hardened_https}/" and not result.redirects


def test_an_https_url_costs_no_extra_request(
    hosts: LoopbackHosts, ca_file: str, backend_name: str, server_tls: ssl.SSLContext
) -> None:
    """The line named what to fetch: no http probe, redirection not evaluated (scored 0)."""
    seen: list[bytes] = []
    https_port = hosts.serve(recording(response("200 OK", HARDENED), seen), tls=server_tls)
    probe: list[bytes] = []
    http_port = hosts.serve(recording(response(), probe))
    line = f"https://127.0.0.1:{https_port}/"
    result = fetch_audited(backend_name, line, cafile=ca_file, audit_http_port=http_port)
    assert result.audit is not None
    assert result.audit.tests["redirection"].result == "redirection-not-evaluated"
    assert (len(seen), probe) == (1, [])


def test_text_csv_stats_and_min_grade(hosts: LoopbackHosts, tmp_path: Any) -> None:
    """One `audit >` line with what cost points, the two CSV columns, the grades in --stats,
    and --min-grade writing only the targets graded below it (a failure is not graded)."""
    hardened = f"http://127.0.0.1:{hosts.serve(replies(response('200 OK', HARDENED)))}/"
    bare = f"http://127.0.0.1:{hosts.serve(replies(response('200 OK', BARE)))}/"
    failed = f"http://127.0.0.1:{hosts.refused()}/"
    listing = tmp_path / "hosts.txt"
    listing.write_text(f"{hardened}\n{bare}\n{failed}\n")
    code, out, err = invoke("--audit", "--order", "input", "-l", str(listing), "--stats")
    assert code == 1  # the refused one
    audit_lines = [line for line in out.splitlines() if " audit > " in line]
    # An http URL that answers is its own redirection route: no redirect (-20). Over plain http
    # no HSTS can be set (-20), and from 60 the bonuses do not count. The bare one misses four
    # headers more.
    assert audit_lines == [
        f"{hardened} audit > C+ 60: redirection-missing -20, hsts-not-implemented-no-https -20",
        f"{bare} audit > F 10: csp-not-implemented -25, redirection-missing -20,"
        " hsts-not-implemented-no-https -20, x-content-type-options-not-implemented -5,"
        " x-frame-options-not-implemented -20",
    ]
    assert "  grades   C+ 1  F 1\n" in err
    code, out, err = invoke(
        "--audit", "--order", "input", "-l", str(listing), "--format", "csv",
        "--fields", "input,audit_grade,audit_score",
    )  # fmt: skip
    assert out.splitlines() == [
        "input,audit_grade,audit_score",
        f"{hardened},C+,60",
        f"{bare},F,10",
        f"{failed},,",
    ]
    code, out, err = invoke("--audit", "--json", "--min-grade", "c+", "-l", str(listing))
    assert list(records(out)) == [bare]
    code, out, err = invoke("--audit", "--json", "--min-grade", "F", "-l", str(listing))
    assert out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-grade", "B"], "--min-grade needs --audit"),
        (["--audit", "--min-grade", "Q"], "invalid grade 'Q'"),
    ],
)
def test_min_grade_usage_errors(args: list[str], message: str) -> None:
    code, out, err = invoke(*args, "127.0.0.1")
    assert code == 2 and message in err and out == ""


def test_scheme_http_under_audit_grades_the_http_route(
    hosts: LoopbackHosts, hardened_https: int, ca_file: str
) -> None:
    """--scheme http is obeyed: no https try, and the fetch's own route is the probe."""
    http_port = hosts.serve(plain_redirect(f"https://127.0.0.1:{hardened_https}/"))
    line = f"127.0.0.1:{http_port}"
    code, out, err = invoke("--audit", "--scheme", "http", "--cacert", ca_file, "--json", line)
    record = records(out)[line]
    assert record["attempts"] == [] and record["url"] == f"http://{line}/"
    assert record["audit"]["tests"]["redirection"]["result"] == "redirection-to-https"


class BuggyOverHttp(StubBackend):
    """Answers https; a bug of ours on every plain-http request."""

    async def fetch(self, target: Target, trace: Trace) -> ResponseHead:
        if target.scheme == "http":
            raise KeyError("bug")
        return await super().fetch(target, trace)


def test_a_bug_on_the_http_probe_is_the_targets_internal_error() -> None:
    """Not "http does not answer" (which would blame the host): the record says it was us."""
    config = audited()
    [result] = collect(["ok1"], config, BuggyOverHttp(config))
    assert result.error is not None and result.error.kind == "internal-error"
    assert (result.status_code, result.headers, result.audit) == (None, [], None)


def test_with_insecure_a_certificate_that_would_not_verify_costs_hsts_its_points(
    hosts: LoopbackHosts, ca_file: str, backend_name: str, wrong_name_tls: ssl.SSLContext
) -> None:
    """-k fetches the head anyway; the offline verdict (a name mismatch) tells the grader the
    certificate is bad, so HSTS counts as MDN counts it over a bad certificate."""
    port = hosts.serve(replies(response("200 OK", HARDENED)), tls=wrong_name_tls)
    args = ["--json", "--audit", "--backend", backend_name, "--cacert", ca_file]
    code, out, _ = invoke(*args, "-k", f"https://127.0.0.1:{port}/")
    [record] = records(out).values()
    assert record["tls"]["verified"] is False
    assert record["audit"]["tests"]["strict-transport-security"]["result"] == "hsts-invalid-cert"
    code, out, _ = invoke(*args, f"https://localhost:{port}/")
    [record] = records(out).values()  # without -k: the tls-error record, not graded
    assert record["audit"] is None and record["error"]["kind"] == "tls-error"
