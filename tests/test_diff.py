"""afetch diff: every change kind, the volatile-header list, torn and foreign files, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher import diff
from fetcher.cli import afetch
from fetcher.diff import (
    CHANGE_KINDS,
    DEFAULT_IGNORED_HEADERS,
    DiffExit,
    HeaderPolicy,
    Options,
    cookie_forms,
    diff_command,
    main,
    wants_colour,
)
from fetcher.errors import ConnectionRefused, FetchTimeout
from fetcher.loopback import LoopbackDNS, LoopbackHosts, read_request, response
from fetcher.models import Redirect, Result
from fetcher.records import RECORD_FIELDS
from fetcher.targets import parse_target

ROOT = Path(__file__).resolve().parent.parent
HEADERS = [("Server", "nginx/1.18"), ("Content-Type", "text/html"), ("Date", "Tue, 01 Dec 2026")]


def record(text: str = "example.com", **changes: Any) -> dict[str, Any]:
    """A record as afetch writes it (Result.to_record), with `changes` applied on top."""
    result = Result(
        input=text,
        target=parse_target(text),
        method="GET",
        backend="raw",
        host_ip="192.0.2.1",
        status_code=200,
        reason="OK",
        http_version="1.1",
        headers=list(HEADERS),
    )
    data = result.to_record()
    data.update(changes)
    return data


def failed(text: str = "example.com", error: Exception | None = None) -> dict[str, Any]:
    result = Result(input=text, target=parse_target(text), method="GET", backend="raw")
    result.error = error or FetchTimeout("no response headers within 10 s", "read")  # type: ignore[assignment]
    return result.to_record()


def headers(**extra: list[str]) -> dict[str, list[str]]:
    base = {name.lower(): [value] for name, value in HEADERS}
    base.update({name.replace("_", "-"): values for name, values in extra.items()})
    return base


def write(path: Path, records: list[dict[str, Any]], tail: str = "") -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return str(path)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(diff_command, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_diff(
    tmp_path: Path, old: list[dict[str, Any]], new: list[dict[str, Any]], *args: str
) -> tuple[int, str, str]:
    return invoke(*args, write(tmp_path / "old.jsonl", old), write(tmp_path / "new.jsonl", new))


def kinds(out: str) -> list[str]:
    return [line.split(" ")[1] for line in out.splitlines()]


def test_helper_records_are_afetch_records() -> None:
    assert tuple(record()) == RECORD_FIELDS
    assert tuple(failed()) == RECORD_FIELDS


def test_same_records_in_another_order_are_no_change(tmp_path: Path) -> None:
    old = [record("a.example"), record("b.example"), failed("c.example")]
    code, out, err = run_diff(tmp_path, old, old[::-1])
    assert (code, out, err) == (0, "", "")


CERT = {"sha256": "ab" * 32, "not_after": "2027-03-01T00:00:00Z", "days_left": 89}
RENEWED = {"sha256": "cd" * 32, "not_after": "2027-06-01T00:00:00Z", "days_left": 181}
REDIRECT = [Redirect("http://example.com/", 301, "https://example.com/").as_dict()]

# kind -> (old record, new record, the text line's detail)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "appeared": ({}, record(), "200"),
    "disappeared": (record(), {}, "200"),
    "status": (record(), record(status_code=503), "200 -> 503"),
    "failed": (record(), failed(), "200 -> timeout: no response headers within 10 s"),
    "answered": (failed(), record(), "timeout -> 200"),
    "error": (
        failed(),
        failed(error=ConnectionRefused("connection refused", "connect")),
        "timeout -> connection-refused: connection refused",
    ),
    "header-added": (
        record(),
        record(headers=headers(x_frame_options=["DENY"])),
        "x-frame-options: DENY",
    ),
    "header-removed": (
        record(headers=headers(x_powered_by=["PHP/7.4"])),
        record(),
        "x-powered-by: PHP/7.4",
    ),
    "header-changed": (
        record(),
        record(headers=headers(server=["nginx/1.25"])),
        "server: nginx/1.18 -> nginx/1.25",
    ),
    "address": (record(), record(host_ip="192.0.2.7"), "192.0.2.1 -> 192.0.2.7"),
    "url": (
        record(url="https://example.com/", port=443, final_url="https://example.com/"),
        record(),
        "https://example.com/ -> http://example.com/",
    ),
    "redirects": (
        record(redirects=REDIRECT, final_url="https://example.com/"),
        record(redirects=[{**REDIRECT[0], "status_code": 308}], final_url="https://example.com/"),
        "301 https://example.com/ -> 308 https://example.com/",
    ),
    "final-url": (
        record(redirects=REDIRECT, final_url="https://example.com/"),
        record(redirects=REDIRECT, final_url="https://www.example.com/"),
        "https://example.com/ -> https://www.example.com/",
    ),
    "certificate": (
        record(tls={"cert": CERT}),
        record(tls={"cert": RENEWED}),
        f"{'ab' * 8} (until 2027-03-01T00:00:00Z) -> {'cd' * 8} (until 2027-06-01T00:00:00Z)",
    ),
    "expiring": (
        record(tls={"cert": CERT}),
        record(tls={"cert": {**CERT, "days_left": 29}}),
        "29 days left (was 89)",
    ),
    "grade": (
        record(audit={"grade": "B", "score": 80}),
        record(audit={"grade": "C", "score": 65}),
        "B (80) -> C (65)",
    ),
}


def test_every_change_kind_has_a_case() -> None:
    assert set(CASES) == set(CHANGE_KINDS)


@pytest.mark.parametrize("kind", CHANGE_KINDS)
def test_each_change_kind_is_one_line_and_one_json_change(tmp_path: Path, kind: str) -> None:
    old, new, shown = CASES[kind]
    code, out, err = run_diff(tmp_path, [old] if old else [], [new] if new else [])
    assert (code, err) == (1, "")
    assert out == f"example.com {kind} > {shown}\n"
    code, out, _ = run_diff(tmp_path, [old] if old else [], [new] if new else [], "--json")
    assert code == 1
    (line,) = out.splitlines()
    found = json.loads(line)
    assert (found["input"], [c["kind"] for c in found["changes"]]) == ("example.com", [kind])


def test_json_change_objects(tmp_path: Path) -> None:
    new = record(status_code=301, headers=headers(server=["nginx/1.25"], location=["/x"]))
    code, out, _ = run_diff(tmp_path, [record()], [new], "--json")
    assert code == 1
    assert json.loads(out) == {
        "input": "example.com",
        "port": 80,
        "url": "http://example.com/",
        "changes": [
            {"kind": "status", "old": 200, "new": 301},
            {"kind": "header-changed", "name": "server",
             "old": ["nginx/1.18"], "new": ["nginx/1.25"]},
            {"kind": "header-added", "name": "location", "old": None, "new": ["/x"]},
        ],
    }  # fmt: skip
    _, out, _ = run_diff(tmp_path, [record()], [failed()], "--json")
    assert json.loads(out)["changes"] == [
        {"kind": "failed", "old": 200, "new": "timeout",
         "message": "no response headers within 10 s"}
    ]  # fmt: skip


def test_a_new_chain_to_a_new_place_is_two_changes(tmp_path: Path) -> None:
    new = record(redirects=REDIRECT, final_url="https://example.com/")
    code, out, _ = run_diff(tmp_path, [record()], [new])
    assert out.splitlines() == [
        "example.com redirects > none -> 301 https://example.com/",
        "example.com final-url > http://example.com/ -> https://example.com/",
    ]


def test_a_failure_has_no_head_to_compare(tmp_path: Path) -> None:
    """answered -> failed is one line, not one per header that vanished; the same error kind
    with another message is no change."""
    code, out, _ = run_diff(tmp_path, [record()], [failed()])
    assert kinds(out) == ["failed"]
    other = failed(error=FetchTimeout("no connection within 5 s", "connect"))
    assert run_diff(tmp_path, [failed()], [other])[:2] == (0, "")


def test_tls_and_audit_compared_only_when_both_records_carry_them(tmp_path: Path) -> None:
    older = {name: value for name, value in record().items() if name != "tls"}  # before tls
    assert run_diff(tmp_path, [older], [record(tls={"cert": CERT})])[:2] == (0, "")
    assert run_diff(tmp_path, [record()], [record(audit={"grade": "F"})])[:2] == (0, "")
    # Carried by both, a certificate that appears is a change (an http site that moved to https
    # also changes its url, reported alongside).
    code, out, _ = run_diff(tmp_path, [record(tls=None)], [record(tls={"cert": CERT})])
    assert (code, kinds(out)) == (1, ["certificate"])
    assert "none -> abab" in out


def test_expiring_is_reported_once_when_the_threshold_is_crossed(tmp_path: Path) -> None:
    soon = record(tls={"cert": {**CERT, "days_left": 20}})
    sooner = record(tls={"cert": {**CERT, "days_left": 12}})
    assert run_diff(tmp_path, [soon], [sooner])[:2] == (0, "")
    code, out, _ = run_diff(tmp_path, [record(tls={"cert": CERT})], [soon], "--expiry-days", "7")
    assert (code, out) == (0, "")
    code, out, _ = run_diff(tmp_path, [soon], [sooner], "--expiry-days", "14")
    assert (code, kinds(out)) == (1, ["expiring"])


def test_volatile_headers_are_ignored_by_default(tmp_path: Path) -> None:
    old = record(headers=headers(etag=['"1"'], x_request_id=["a"], cf_ray=["1-AMS"], age=["3"]))
    new = record(
        headers=headers(
            date=["Wed, 02 Dec 2026"], etag=['"2"'], x_request_id=["b"], cf_ray=["2-FRA"],
            x_amz_cf_pop=["FRA50"], x_github_request_id=["X:1"], content_length=["5120"],
        )
    )  # fmt: skip
    assert run_diff(tmp_path, [old], [new]) == (0, "", "")
    # ...and all of them compared with --only-header '*'.
    code, out, _ = run_diff(tmp_path, [old], [new], "--only-header", "*")
    assert code == 1
    changed = {line.split(" > ")[1].split(":")[0] for line in out.splitlines()}
    assert changed == {
        "date", "etag", "x-request-id", "cf-ray", "age", "x-amz-cf-pop", "x-github-request-id",
        "content-length",
    }  # fmt: skip


def test_set_cookie_is_compared_by_names_and_attributes_not_values(tmp_path: Path) -> None:
    def cookies(*values: str) -> dict[str, Any]:
        return record(headers=headers(set_cookie=list(values)))

    old = cookies("sid=abc; Path=/; Expires=Tue, 01 Dec 2026 10:00:00 GMT; Secure", "lang=en")
    same = cookies("lang=fr", "sid=xyz; path=/; Max-Age=3600; Secure")
    assert run_diff(tmp_path, [old], [same])[:2] == (0, "")
    insecure = cookies("sid=xyz; Path=/", "lang=fr")
    code, out, _ = run_diff(tmp_path, [old], [insecure])
    assert out == (
        "example.com header-changed > set-cookie: lang, sid; path=/; secure -> lang, sid; path=/\n"
    )
    assert cookie_forms(["a=1;HttpOnly; SameSite=Lax", "b"]) == ("a; httponly; samesite=Lax", "b")


def test_ignore_header_adds_names_and_globs(tmp_path: Path) -> None:
    new = record(headers=headers(server=["caddy"], x_backend=["b2"]))
    code, out, _ = run_diff(tmp_path, [record()], [new])
    assert sorted(kinds(out)) == ["header-added", "header-changed"]
    args = ("--ignore-header", "Server", "--ignore-header", "x-*")
    assert run_diff(tmp_path, [record()], [new], *args)[:2] == (0, "")


def test_only_header_compares_just_those(tmp_path: Path) -> None:
    new = record(headers=headers(server=["caddy"], date=["Wed"]))
    code, out, _ = run_diff(tmp_path, [record()], [new], "--only-header", "date")
    assert out == "example.com header-changed > date: Tue, 01 Dec 2026 -> Wed\n"
    # --ignore-header still removes names from --only-header's.
    args = ("--only-header", "*", "--ignore-header", "date")
    assert kinds(run_diff(tmp_path, [record()], [new], *args)[1]) == ["header-changed"]
    # Status and the other facts are still compared.
    code, out, _ = run_diff(tmp_path, [record()], [record(status_code=404)], "--only-header", "x")
    assert kinds(out) == ["status"]


def test_header_policy_caches_a_bounded_number_of_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff, "NAME_CACHE_LIMIT", 3)
    policy = HeaderPolicy()
    assert [policy.compares(f"x-{n}") for n in range(10)] == [True] * 10
    assert not policy.compares("ETag") and not policy.compares("x-amzn-requestid")
    assert len(policy._decided) == 3


def test_docs_list_every_default_ignored_header() -> None:
    docs = (ROOT / "README.md").read_text()
    missing = [name for name in DEFAULT_IGNORED_HEADERS if f"`{name}`" not in docs]
    assert missing == []
    assert all(f"`{kind}`" in docs for kind in CHANGE_KINDS)


def test_ports_records_match_port_by_port(tmp_path: Path) -> None:
    def at(port: int, **changes: Any) -> dict[str, Any]:
        url = f"http://example.com:{port}/"
        return record(port=port, url=url, final_url=url, **changes)

    old = [at(80), at(443), at(8080)]
    new = [at(8443), at(443, status_code=400), at(80)]
    code, out, _ = run_diff(tmp_path, old, new)
    assert out.splitlines() == [
        "example.com:8443 appeared > 200",
        "example.com:443 status > 200 -> 400",
        "example.com:8080 disappeared > 200",
    ]
    # One port left on each side is still matched by port.
    code, out, _ = run_diff(tmp_path, [at(80), at(443)], [at(8080)])
    assert kinds(out) == ["appeared", "disappeared", "disappeared"]


def test_targets_order_new_first_then_the_ones_gone(tmp_path: Path) -> None:
    old = [record("gone.example"), record("b.example"), record("a.example")]
    new = [record("a.example", status_code=500), record("new.example"), record("b.example")]
    code, out, _ = run_diff(tmp_path, old, new, "--stats")[0:3]
    assert out.splitlines() == [
        "a.example status > 200 -> 500",
        "new.example appeared > 200",
        "gone.example disappeared > 200",
    ]


def test_stats_on_stderr(tmp_path: Path) -> None:
    old = [record("gone.example"), record("b.example"), record("a.example")]
    new = [record("a.example", status_code=500), record("new.example"), record("b.example")]
    code, _, err = run_diff(tmp_path, old, new, "--stats")
    assert code == 1
    assert err == (
        "afetch diff: 3 old, 3 new records: 1 changed, 1 appeared, 1 disappeared, 1 unchanged\n"
    )


def test_duplicates_last_record_wins_with_a_warning(tmp_path: Path) -> None:
    """An -o file appended by two runs holds a target twice: the later fetch is compared."""
    old = [record(status_code=500), record()]
    new = [record(), record(status_code=503), record(status_code=404)]
    code, out, err = run_diff(tmp_path, old, new)
    assert out == "example.com status > 200 -> 404\n"
    assert err.splitlines() == [
        f"afetch diff: {tmp_path / 'old.jsonl'}: 1 record repeats an earlier target's; the last"
        " of each is compared",
        f"afetch diff: {tmp_path / 'new.jsonl'}: 2 records repeat an earlier target's; the last"
        " of each is compared",
    ]


def test_torn_last_line_is_tolerated_and_reported(tmp_path: Path) -> None:
    """A run killed mid-write leaves half a record: its target was never recorded."""
    new = [record("a.example")]
    torn = json.dumps(record("b.example"))[:50]
    old_path = write(tmp_path / "old.jsonl", [record("a.example"), record("b.example")])
    new_path = write(tmp_path / "new.jsonl", new, tail=torn)
    code, out, err = invoke(old_path, new_path)
    assert (code, out) == (1, "b.example disappeared > 200\n")
    assert err == f"afetch diff: {new_path}: torn last line ignored (a run cut short?)\n"
    # Only a torn line: an empty run, not a foreign file.
    (tmp_path / "only.jsonl").write_text(torn)
    code, out, err = invoke(str(tmp_path / "only.jsonl"), str(tmp_path / "only.jsonl"))
    assert (code, out) == (0, "")
    assert "torn last line" in err


def test_last_line_without_newline_is_a_record(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    path.write_text(json.dumps(record(status_code=302)))
    code, out, err = invoke(write(tmp_path / "old.jsonl", [record()]), str(path))
    assert (code, out, err) == (1, "example.com status > 200 -> 302\n", "")


def test_malformed_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = [json.dumps(record("a.example")), "not json", "[1, 2]", '{"no": "input"}', "",
             json.dumps(record("b.example", status_code=["x"])),  # JSON, but not our shapes
             json.dumps(record("c.example"))]  # fmt: skip
    (tmp_path / "new.jsonl").write_text("\n".join(lines) + "\n")
    old = write(tmp_path / "old.jsonl", [record("a.example"), record("c.example")])
    code, out, err = invoke(old, str(tmp_path / "new.jsonl"))
    assert (code, out) == (0, "")
    assert err == (
        f"afetch diff: {tmp_path / 'new.jsonl'}: 4 lines are not records, skipped (first: line 2)\n"
    )
    old = write(tmp_path / "old.jsonl", [record("a.example")])
    code, out, _ = invoke(old, str(tmp_path / "new.jsonl"))
    assert (code, out) == (1, "c.example appeared > 200\n")


def test_overlong_line_is_skipped_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff, "MAX_LINE", 4096)
    path = tmp_path / "new.jsonl"
    lines = [json.dumps(record("a.example")), "x" * 10_000, json.dumps(record("b.example"))]
    path.write_text("\n".join(lines) + "\n")
    code, out, err = invoke(write(tmp_path / "old.jsonl", [record("a.example")]), str(path))
    assert (code, out) == (1, "b.example appeared > 200\n")
    assert "1 line is not records, skipped (first: line 2)" in err


def test_lone_surrogates_written_by_the_stdlib_encoder_are_read(tmp_path: Path) -> None:
    """afetch falls back to the stdlib encoder for strings orjson cannot write."""
    odd = record("a.example", reason="\udcff", headers=headers(server=["\udcff"]))
    code, out, _ = run_diff(tmp_path, [odd], [{**odd, "status_code": 201}])
    assert out == "a.example status > 200 -> 201\n"


@pytest.mark.parametrize(
    "content",
    ["example.com\nexample.org\n", "example.com", "\x00\x01binary" * 100, '{"input": 1}\n'],
)
def test_a_file_that_is_not_json_lines_is_trouble(tmp_path: Path, content: str) -> None:
    (tmp_path / "hosts.txt").write_text(content)
    code, out, err = invoke(write(tmp_path / "old.jsonl", [record()]), str(tmp_path / "hosts.txt"))
    assert (code, out) == (2, "")
    assert err == (
        f"afetch diff: error: {tmp_path / 'hosts.txt'}: not afetch JSON Lines (no record in its"
        " first lines)\n"
    )


def test_a_long_foreign_file_is_refused_after_its_first_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff, "PROBE_LINES", 10)
    (tmp_path / "big.txt").write_text("example.com\n" * 50 + json.dumps(record()) + "\n")
    code, _, err = invoke(str(tmp_path / "big.txt"), str(tmp_path / "big.txt"))
    assert code == 2 and "not afetch JSON Lines" in err


def test_empty_files_are_empty_runs(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    code, out, _ = invoke(str(tmp_path / "empty.jsonl"), write(tmp_path / "new.jsonl", [record()]))
    assert (code, out) == (1, "example.com appeared > 200\n")
    assert invoke(str(tmp_path / "empty.jsonl"), str(tmp_path / "empty.jsonl")) == (0, "", "")


def test_files_that_cannot_be_read_are_trouble(tmp_path: Path) -> None:
    good = write(tmp_path / "old.jsonl", [record()])
    missing = str(tmp_path / "missing.jsonl")
    code, out, err = invoke(good, missing)
    assert (code, out) == (2, "")
    assert err == f"afetch diff: error: cannot read {missing}: No such file or directory\n"
    assert invoke(missing, good)[0] == 2
    code, _, err = invoke(good, str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening it does not block
    try:
        code, _, err = invoke(good, str(fifo))
    finally:
        os.close(fd)
    assert code == 2
    assert err == (
        f"afetch diff: error: {fifo}: not a regular file (diff reads records twice, by offset)\n"
    )


def test_text_output_escapes_server_bytes(tmp_path: Path) -> None:
    new = record(headers=headers(server=["evil\x1b]0;owned\x07"]))
    _, out, _ = run_diff(
        tmp_path, [{**record(), "input": "bad\x1bhost"}], [{**new, "input": "bad\x1bhost"}]
    )
    assert out == "bad\\x1bhost header-changed > server: nginx/1.18 -> evil\\x1b]0;owned\\x07\n"


def test_json_output_is_ascii(tmp_path: Path) -> None:
    new = record("bücher.example", headers=headers(server=["ü"]))
    _, out, _ = run_diff(tmp_path, [record("bücher.example")], [new], "--json")
    assert out.isascii()
    assert json.loads(out)["changes"][0]["new"] == ["ü"]


def test_colour_only_when_asked_or_on_a_terminal(tmp_path: Path) -> None:
    old, new = [record(), record("gone.example")], [record(status_code=500), record("b.example")]
    _, out, _ = run_diff(tmp_path, old, new, "--color", "always")
    assert out.splitlines() == [
        "example.com \x1b[33mstatus\x1b[0m > 200 -> 500",
        "b.example \x1b[32mappeared\x1b[0m > 200",
        "gone.example \x1b[31mdisappeared\x1b[0m > 200",
    ]
    assert "\x1b" not in run_diff(tmp_path, old, new)[1]  # auto, and CliRunner is no terminal
    assert "\x1b" not in run_diff(tmp_path, old, new, "--color", "always", "--json")[1]

    class Terminal:
        def isatty(self) -> bool:
            return True

    assert wants_colour("auto", Terminal(), {}) is True
    assert wants_colour("auto", Terminal(), {"NO_COLOR": "1"}) is False
    assert wants_colour("never", Terminal(), {}) is False
    assert wants_colour("auto", object(), {}) is False


def test_main_returns_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old.jsonl", [record()])
    assert main([old, old]) == DiffExit.SAME
    assert main([old, write(tmp_path / "new.jsonl", [failed()])]) == DiffExit.CHANGED
    capsys.readouterr()
    assert main(["--no-such-option", old, old]) == DiffExit.TROUBLE
    err = capsys.readouterr().err  # click words it "No such option: --x" before 8.2.1
    assert err.startswith("afetch diff: error: No such option") and "--no-such-option" in err
    assert err.count("\n") == 1
    assert main([old]) == DiffExit.TROUBLE
    assert capsys.readouterr().err == "afetch diff: error: Missing argument 'NEW.jsonl'.\n"
    assert main(["--help"]) == 0
    assert "Usage: afetch diff [OPTIONS] OLD.jsonl NEW.jsonl" in capsys.readouterr().out


def test_main_interrupt_and_internal_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path / "old.jsonl", [record()])

    def raising(error: BaseException) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            raise error

        return run

    monkeypatch.setattr(diff, "run", raising(KeyboardInterrupt()))
    assert main([old, old]) == 130
    monkeypatch.setattr(diff, "run", raising(RuntimeError("boom")))
    capsys.readouterr()
    assert main([old, old]) == 70
    assert capsys.readouterr().err == "afetch diff: internal error: RuntimeError: boom\n"
    monkeypatch.setenv("AFETCH_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main([old, old])
    monkeypatch.setattr(diff, "run", raising(OSError(5, "Input/output error")))
    assert main([old, old]) == 2
    assert capsys.readouterr().err == "afetch diff: error: Input/output error\n"


def python_m(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fetcher.diff", *args], capture_output=True, timeout=60, **kwargs
    )


def test_as_a_process_exit_status_is_diffs(tmp_path: Path) -> None:
    old = write(tmp_path / "old.jsonl", [record()])
    new = write(tmp_path / "new.jsonl", [record(status_code=404)])
    assert python_m(old, old).returncode == 0
    done = python_m(old, new)
    assert (done.returncode, done.stderr) == (1, b"")
    assert done.stdout == b"example.com status > 200 -> 404\n"
    done = python_m(old, str(tmp_path / "missing"))
    assert done.returncode == 2 and done.stderr.count(b"\n") == 1


def test_as_a_process_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    many = [record(f"h{n}.example") for n in range(20_000)]
    old = write(tmp_path / "old.jsonl", [])
    new = write(tmp_path / "new.jsonl", many)
    shell = f"{sys.executable} -m fetcher.diff {old} {new} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=60)
    assert done.stdout == b"h0.example appeared > 200\n"
    assert (done.returncode, done.stderr) == (1, b"")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a.example", "b.example", "c:81", "http://d/"]),
                  st.sampled_from([200, 301, 404]), st.sampled_from(["nginx", "caddy"])),
        max_size=8, unique_by=lambda item: item[0]),
    st.randoms(use_true_random=False),
)  # fmt: skip
def test_property_a_file_against_itself_shuffled_is_no_change(
    tmp_path_factory: pytest.TempPathFactory, items: list[tuple[str, int, str]], rng: Any
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    records = [record(text, status_code=code, headers=headers(server=[server]))
               for text, code, server in items]  # fmt: skip
    shuffled = records[:]
    rng.shuffle(shuffled)
    assert run_diff(tmp, records, shuffled)[:2] == (0, "")
    if records:
        changed = [*shuffled[1:], {**shuffled[0], "status_code": 599}]
        assert kinds(run_diff(tmp, records, changed)[1]) == ["status"]


def test_options_default_policy() -> None:
    assert Options().expiry_days == diff.DEFAULT_EXPIRY_DAYS
    assert not Options().headers.compares("date")


def test_real_afetch_runs_diffed(hosts: LoopbackHosts, tmp_path: Path) -> None:
    """Two real runs against a host whose answer changes in between, written with -o."""
    answer = [response("200 OK", [("Server", "a"), ("X-Request-Id", "1")])]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer[0])
        await writer.drain()
        writer.close()

    port = hosts.serve(script)
    refused = hosts.refused()
    targets = [f"127.0.0.1:{port}", f"127.0.0.1:{refused}"]
    runner = CliRunner()
    old, new = str(tmp_path / "old.jsonl"), str(tmp_path / "new.jsonl")
    assert runner.invoke(afetch, ["-q", "-o", old, *targets]).exit_code == 1
    answer[0] = response("301 Moved", [("Server", "b"), ("X-Request-Id", "2"), ("Location", "/")])
    assert runner.invoke(afetch, ["-q", "-o", new, targets[0]]).exit_code == 0
    code, out, err = invoke(old, new)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"127.0.0.1:{port} status > 200 -> 301",
        f"127.0.0.1:{port} header-changed > server: a -> b",
        f"127.0.0.1:{port} header-added > location: /",
        f"127.0.0.1:{refused} disappeared > connection-refused",
    ]


def test_bench_plants_and_finds_its_changes() -> None:
    """bench/diff.py (the million-record bound, measured by hand) at a size a test can run."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "diff.py"), "--records", "3000"],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    planted, reported = done.stdout.decode().splitlines()[2:4]
    assert planted.split(None, 1)[1] == reported.split(None, 1)[1]
    assert "'changed': 36" in reported


def test_odd_shapes_are_malformed_lines_not_crashes(tmp_path: Path) -> None:
    odd = [
        record("a.example", headers="server: x"),
        record("b.example", headers=[["a", "b"]]),
        record("c.example", headers={"server": 5}),
        record("d.example", redirects={1: 2}),
    ]
    old = [record("c.example"), record("d.example")]
    code, out, err = run_diff(tmp_path, old, [*odd, record("e.example")])
    # JSON of other shapes than afetch writes, but records: compared as they are.
    assert (code, out) == (1, (
        "c.example header-changed > server: nginx/1.18 -> 5\n"
        "c.example header-removed > content-type: text/html\n"
        "d.example redirects > none -> {'1': 2}\n"
        "e.example appeared > 200\n"
    ))  # fmt: skip
    _, out, _ = run_diff(tmp_path, [record(redirects=["x", REDIRECT[0]])], [record()])
    assert out == "example.com redirects > x > 301 https://example.com/ -> none\n"
    assert "2 lines are not records, skipped (first: line 1)" in err


def test_records_without_headers_compare(tmp_path: Path) -> None:
    bare = {"input": "x.example", "status_code": 200}
    assert run_diff(tmp_path, [bare], [{**bare, "headers": {}}])[:2] == (0, "")
    code, out, _ = run_diff(tmp_path, [bare], [{**bare, "headers": {"server": ["a"]}}])
    assert out == "x.example header-added > server: a\n"


def test_ports_on_one_side_only_and_repeated_ports(tmp_path: Path) -> None:
    def at(port: int, text: str = "example.com", **changes: Any) -> dict[str, Any]:
        url = f"http://{text}:{port}/"
        return record(text, port=port, url=url, final_url=url, **changes)

    # One record before, several after: matched by port.
    code, out, _ = run_diff(tmp_path, [at(443)], [at(80), at(443, status_code=500)])
    assert out.splitlines() == [
        "example.com:80 appeared > 200",
        "example.com:443 status > 200 -> 500",
    ]
    # Several before, none after; a port recorded twice.
    old = [at(80, "gone.example"), at(443, "gone.example"), at(443, "gone.example")]
    code, out, err = run_diff(tmp_path, old, [at(80)])
    assert out.splitlines() == [
        "example.com appeared > 200",
        "gone.example:80 disappeared > 200",
        "gone.example:443 disappeared > 200",
    ]
    assert "1 record repeats" in err
    ipv6 = record("[2001:db8::1]", port=80, path="/x")
    assert diff._label(ipv6, True) == "[2001:db8::1]:80/x"


def test_a_file_changed_while_being_read_is_trouble(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    write(path, [record("a.example"), record("b.example")])
    side = diff.Side(str(path))
    side.index(Options())
    path.write_text("x" * path.stat().st_size)
    packed = side.entries[hash("b.example") & diff._DIGEST_MASK]
    assert isinstance(packed, int)
    with pytest.raises(diff.DiffError, match="changed while being read"):
        side.record(packed)
    side.close()


def test_a_file_too_large_to_index_is_trouble(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff, "MAX_FILE_SIZE", 100)
    big = write(tmp_path / "big.jsonl", [record()])
    code, _, err = invoke(big, big)
    assert code == 2 and "larger than" in err


def test_whitespace_after_the_last_line_is_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "new.jsonl", [record()], tail="   ")
    assert invoke(path, path) == (0, "", "")


def test_audit_and_json_fallbacks(tmp_path: Path) -> None:
    code, out, _ = run_diff(
        tmp_path, [record(audit={"grade": "B"})], [record(audit={"grade": "A"})]
    )
    assert out == "example.com grade > B -> A\n"
    # Every record has "audit": null on an answered one is a run without --audit, no grade.
    assert run_diff(tmp_path, [record(audit=None)], [record(audit={"grade": "A"})])[:2] == (0, "")
    odd = record("a.example", headers=headers(server=["\udcff"]))
    _, out, _ = run_diff(tmp_path, [record("a.example")], [odd], "--json")
    assert json.loads(out)["changes"][0]["new"] == ["\udcff"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = ["status_code", "url", "final_url", "host_ip", "headers", "redirects", "failed", "error",
          "tls", "audit", "port", "host", "path"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.dictionaries(st.sampled_from(FIELDS), JSON)),
        min_size=1,
        max_size=6,
    )
)
def test_property_any_json_fields_never_crash(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, dict[str, Any]]]
) -> None:
    """Whatever the fields hold, each line is a record or a counted malformed line: never a
    traceback, always diff's status."""
    tmp = tmp_path_factory.mktemp("any")
    half = len(rows) // 2
    old = [{"input": text, **fields} for text, fields in rows[:half]]
    new = [{"input": text, **fields} for text, fields in rows[half:]]
    for args in ((), ("--json",)):
        code, out, err = run_diff(tmp, old, new, *args)
        assert code in (0, 1, 2), err
        assert "internal error" not in err


def mixed_run(path: Path, count: int, version: int, tail: str = "") -> str:
    """`count` targets, one in 7 changed in version 1, a --ports input, a target recorded twice,
    a malformed line, and about 1 KB per record (as real ones)."""
    padding = {"x-padding": ["p" * 700]}
    rows = []
    for n in range(count):
        status = 500 if version and n % 7 == 0 else 200
        rows.append(record(f"h{n}.example", status_code=status, headers=headers(**padding)))
    rows.append(record("h1.example", status_code=404 + version))
    url = "http://example.com:8080/"
    rows.append(record(port=8080, url=url, final_url=url, host_ip=f"192.0.2.{version}"))
    rows.append(record())
    write(path, rows, tail=tail)
    with open(path, "a") as handle:
        handle.write("not a record\n")
    return str(path)


def test_index_written_by_a_child_reads_back_the_same(tmp_path: Path) -> None:
    path = mixed_run(tmp_path / "run.jsonl", 50, 0, tail=json.dumps(record())[:40])
    direct = diff.Side(path)
    direct.index(Options())
    child = diff.Side(path)
    with open(tmp_path / "index", "w+b") as scratch:
        child.write_index(Options(), scratch)
        scratch.seek(0)
        loaded = diff.Side(path)
        loaded.read_index(scratch)
    assert loaded.entries == direct.entries
    assert loaded.tally == direct.tally
    assert (direct.tally.duplicates, direct.tally.malformed, direct.tally.torn) == (1, 1, False)
    for side in (direct, child, loaded):
        side.close()
    (tmp_path / "hosts.txt").write_text("example.com\n")
    foreign = diff.Side(str(tmp_path / "hosts.txt"))
    with open(tmp_path / "index", "w+b") as scratch:
        foreign.write_index(Options(), scratch)
        scratch.seek(0)
        with pytest.raises(diff.DiffError, match="not afetch JSON Lines"):
            foreign.read_index(scratch)
    foreign.close()


def test_big_files_are_indexed_in_two_processes_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above PARALLEL_MIN_BYTES the process forks (no other thread runs in a fresh process):
    its output must be the sequential path's, warnings included."""
    count = diff.PARALLEL_MIN_BYTES // 900
    old = mixed_run(tmp_path / "old.jsonl", count, 0)
    new = mixed_run(tmp_path / "new.jsonl", count, 1)
    assert Path(new).stat().st_size > diff.PARALLEL_MIN_BYTES
    forked = python_m("--stats", old, new)
    monkeypatch.setattr(diff, "PARALLEL_MIN_BYTES", 1 << 62)
    code, out, err = invoke("--stats", old, new)
    assert forked.returncode == code == 1
    assert forked.stdout.decode() == out
    assert forked.stderr.decode() == err
    assert forked.stdout.count(b" status > 200 -> 500\n") == len(range(0, count, 7))
    assert b"example.com:8080 address > 192.0.2.0 -> 192.0.2.1\n" in forked.stdout
    assert forked.stderr.count(b"not records") == 2
    # NEW foreign (found by the child), then OLD foreign (the child is stopped).
    (tmp_path / "hosts.txt").write_text("example.com\n" * (count * 80))
    for args in ((old, str(tmp_path / "hosts.txt")), (str(tmp_path / "hosts.txt"), new)):
        done = python_m(*args)
        assert done.returncode == 2
        assert done.stderr.endswith(
            b"hosts.txt: not afetch JSON Lines (no record in its first lines)\n"
        )


def test_describe_and_facet_alone() -> None:
    """describe is the authority the digest filters for: usable, and right, on its own."""
    other = failed(error=FetchTimeout("no connection within 5 s", "connect"))
    assert diff.describe(failed(), other, Options()) == []
    assert diff.describe(record(), record(), Options()) == []
    assert diff.describe(record(), record(status_code=500), Options()) == [
        diff.Change("status", 200, 500)
    ]
    with pytest.raises(TypeError):
        HeaderPolicy().facet("server: x")
    reordered = record(headers=dict(reversed(list(headers().items()))))
    assert diff.describe(record(), reordered, Options()) == []


def test_afetch_diff_runs_the_diff_and_a_host_called_diff_is_still_a_host(
    tmp_path: Path, hosts: LoopbackHosts
) -> None:
    """`afetch diff A B` is the diff (its own exit status); `afetch -- diff` fetches a host."""
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text('{"input":"a","port":80,"status_code":200,"headers":{},"failed":false}\n')
    new.write_text('{"input":"a","port":80,"status_code":301,"headers":{},"failed":false}\n')
    command = [sys.executable, "-m", "fetcher"]
    done = subprocess.run([*command, "diff", str(old), str(new)], capture_output=True, timeout=60)
    assert done.returncode == 1 and b"a status > 200 -> 301" in done.stdout, done
    dns = hosts.serve_dns(LoopbackDNS({}))  # knows no names: diff is no name it has
    args = ["--json", "--resolver", f"127.0.0.1:{dns}", "--", "diff"]
    done = subprocess.run([*command, *args], capture_output=True, timeout=60)
    assert done.returncode == 1, done
    assert json.loads(done.stdout)["input"] == "diff"
    assert json.loads(done.stdout)["error"]["kind"] == "dns-error"
