from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
from pathlib import Path

import pytest

from fetcher.errors import FetchTimeout
from fetcher.models import Result, rfc3339
from fetcher.output import (
    Console,
    Format,
    OutputClosed,
    OutputError,
    RecordWriter,
    escape,
    format_jsonl,
    format_text,
)
from fetcher.targets import parse_target

FIELDS = [
    "input", "url", "scheme", "host", "port", "path", "host_ip", "method", "status_code",
    "reason", "http_version", "headers", "timings_ms", "failed", "error", "timestamp", "backend",
    "redirects", "final_url", "attempts", "tls", "audit",
]  # fmt: skip


def ok_result(headers: list[tuple[str, str]] | None = None) -> Result:
    result = Result("www.sohu.com", parse_target("www.sohu.com"), "GET", "raw")
    result.status_code, result.reason, result.http_version = 200, "OK", "1.1"
    result.headers = headers or [("Content-Type", "text/html")]
    result.host_ip = "192.0.2.7"
    result.timings = {"dns": 1.0, "connect": 2.0, "ttfb": 3.0, "total": 6.5}
    return result


def failed_result() -> Result:
    result = Result("www.bad.example", parse_target("www.bad.example"), "GET", "raw")
    result.error = FetchTimeout("no response headers within 10 s", "read")
    return result


def test_text_is_seed_style() -> None:
    assert format_text(ok_result()) == (
        "www.sohu.com header > HTTP/1.1 200 OK\nwww.sohu.com header > Content-Type: text/html\n"
    )
    assert format_text(failed_result()) == (
        "www.bad.example error > timeout: no response headers within 10 s\n"
    )


def test_text_never_prints_control_bytes_raw() -> None:
    evil = ok_result([("X-Evil", "\x1b]0;owned\x07\x9b31m\x00\x7f end\ttab")])
    text = format_text(evil)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text and "\x00" not in text
    assert "\\x1b]0;owned\\x07\\x9b31m\\x00\\x7f end\\ttab" in text
    assert escape("café ok") == "café ok"


def test_jsonl_has_exactly_the_documented_fields() -> None:
    line = format_jsonl(ok_result([("Set-Cookie", "a"), ("set-cookie", "b"), ("X", "1")]))
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert list(record) == FIELDS
    assert record["headers"] == {"set-cookie": ["a", "b"], "x": ["1"]}
    assert record["port"] == 80 and record["failed"] is False and record["error"] is None
    assert record["timings_ms"] == {
        "dns": 1.0, "connect": 2.0, "tls": None, "ttfb": 3.0, "total": 6.5,
    }  # fmt: skip
    assert record["timestamp"].endswith("Z")


def test_jsonl_error_record_and_hostile_values_stay_valid_ascii_json() -> None:
    record = json.loads(format_jsonl(failed_result()))
    assert record["failed"] is True
    assert record["error"] == {
        "kind": "timeout", "phase": "read", "message": "no response headers within 10 s",
    }  # fmt: skip
    hostile = format_jsonl(ok_result([("X", "\x1b[2J\x9b\u00e9")]))
    assert hostile.isascii()
    assert json.loads(hostile)["headers"]["x"] == ["\x1b[2J\x9b\u00e9"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("Server", "nginx"), ("X", 'quote " and \\ slash')], id="ascii"),
        pytest.param([("X", "caf\u00e9 \u2603 \U0001f600")], id="non-ascii"),
        pytest.param([("X", "\x1b[2J\x9b\x00\x7f")], id="controls"),
        pytest.param([("X", "lone \udc80 surrogate")], id="surrogate"),
    ],
)
def test_jsonl_line_is_the_stdlib_encoders_byte_for_byte(headers: list[tuple[str, str]]) -> None:
    """The fast encoder and the stdlib fallback must write the same line for every record."""
    result = ok_result(headers)
    # Timings are milliseconds rounded to 3 decimals (Trace.mark): both encoders print those
    # alike. (They differ below 1e-4, where the stdlib switches to 1e-05 notation.)
    result.timings = {"connect": round(0.1 + 0.2, 3), "ttfb": 0.001, "total": 12345.678}
    expected = json.dumps(result.to_record(), separators=(",", ":")) + "\n"
    assert format_jsonl(result) == expected
    assert expected.isascii()


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


def test_writer_batches_whole_lines_and_appends_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"earlier": true}\n')
    read_fd, write_fd = os.pipe()
    pipe = os.fdopen(write_fd, "wb")
    writer = RecordWriter(Format(format_jsonl), stdout=pipe, file_path=str(out))
    import asyncio

    async def go() -> None:
        for _ in range(3):
            writer.write(ok_result())

    asyncio.run(go())
    writer.close()
    pipe.close()
    piped = os.read(read_fd, 1 << 20).decode()
    os.close(read_fd)
    assert piped.count("\n") == 3
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    assert writer.written == 3


def test_writer_reports_a_closed_pipe() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    pipe = os.fdopen(write_fd, "wb")
    writer = RecordWriter(Format(format_text), stdout=pipe, line_buffered=True)

    with pytest.raises(OutputClosed):
        writer.write(ok_result())
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def test_console_flags_are_plain_data() -> None:
    console = Console(stdin_tty=False, stdout_tty=True, stderr_tty=False)
    assert console.stdout_tty and not console.stderr_tty
    assert isinstance(Console.detect(), Console)


# --- CSV, --fields, headers ----------------------------------------------------------------


def test_csv_has_the_documented_columns_and_flattens_nested_fields() -> None:
    from fetcher.config import Output
    from fetcher.output import make_format
    from fetcher.records import CSV_COLUMNS

    chosen = make_format(Output(format="csv"))
    assert chosen.header == ",".join(CSV_COLUMNS) + "\n"
    ok = ok_result([("Server", "nginx"), ("Content-Type", "text/html; charset=utf-8")])
    [row] = csv.DictReader(io.StringIO(chosen.header + chosen.formatter(ok)))
    assert row["status_code"] == "200" and row["server"] == "nginx"
    assert row["content_type"] == "text/html; charset=utf-8"
    assert row["total_ms"] == "6.5" and row["tls_ms"] == "" and row["failed"] == "False"
    assert row["redirect_count"] == "0" and row["final_url"] == "http://www.sohu.com/"
    [row] = csv.DictReader(io.StringIO(chosen.header + chosen.formatter(failed_result())))
    assert (row["error_kind"], row["error_phase"]) == ("timeout", "read")
    assert row["status_code"] == "" and row["failed"] == "True"


def test_csv_quotes_and_escapes_hostile_values() -> None:
    from fetcher.output import csv_formatter

    line = csv_formatter(["server"])(ok_result([("Server", 'a,"b"\r\n\x1b[2J')]))
    assert line.count("\n") == 1 and "\x1b" not in line
    assert next(csv.reader(io.StringIO(line))) == ['a,"b"\\x0d\\x0a\\x1b[2J']


def test_fields_choose_and_order_json_and_csv() -> None:
    from fetcher.output import csv_formatter, jsonl_formatter

    record = json.loads(jsonl_formatter(["status_code", "url"])(ok_result()))
    assert list(record) == ["status_code", "url"]
    assert record == {"status_code": 200, "url": "http://www.sohu.com/"}
    assert csv_formatter(["status_code", "host"])(ok_result()) == "200,www.sohu.com\n"


def test_csv_header_goes_to_stdout_and_never_to_the_json_lines_file(tmp_path: Path) -> None:
    import asyncio

    from fetcher.config import Output
    from fetcher.output import make_format

    chosen = make_format(Output(format="csv", fields=("host", "status_code")))
    out = tmp_path / "out.jsonl"
    stdout = io.BytesIO()
    writer = RecordWriter(
        chosen,
        stdout=stdout,
        file_path=str(out),
    )

    async def go() -> None:
        writer.write(ok_result())

    asyncio.run(go())
    writer.close()
    assert stdout.getvalue() == b"host,status_code\nwww.sohu.com,200\n"
    assert json.loads(out.read_text())["host"] == "www.sohu.com"


def test_redirects_and_final_url_in_the_record() -> None:
    from fetcher.models import Redirect

    result = ok_result()
    result.redirects = [Redirect("http://www.sohu.com/", 301, "https://www.sohu.com/")]
    result.final_target = parse_target("https://www.sohu.com/")
    record = json.loads(format_jsonl(result))
    assert record["redirects"] == [
        {"url": "http://www.sohu.com/", "status_code": 301, "location": "https://www.sohu.com/"}
    ]
    assert record["final_url"] == "https://www.sohu.com/"
    assert json.loads(format_jsonl(failed_result()))["final_url"] == "http://www.bad.example/"


def test_rfc3339_matches_datetime_formatting() -> None:
    import random
    from datetime import UTC, datetime

    rng = random.Random(7)
    for epoch in [0.0, 1.9999996, 1764000000.0005, *(rng.uniform(0, 2e9) for _ in range(2000))]:
        expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
        assert rfc3339(epoch) == expected.replace("+00:00", "Z")


# --- every record to the file, the shown ones to stdout; failed writes ---------------------


def write_all(writer: RecordWriter, results: list[tuple[Result, bool]]) -> None:
    """Hand `results` (each with whether it is shown) to the writer inside an event loop."""
    import asyncio

    async def go() -> None:
        for result, shown in results:
            writer.write(result, shown=shown)

    asyncio.run(go())


def test_the_file_gets_every_record_and_stdout_only_the_shown_ones(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    stdout = io.BytesIO()
    writer = RecordWriter(Format(format_text), stdout=stdout, file_path=str(out))
    write_all(writer, [(ok_result(), False), (failed_result(), True), (ok_result(), False)])
    writer.close()
    assert stdout.getvalue().decode() == format_text(failed_result())
    inputs = [json.loads(line)["input"] for line in out.read_text().splitlines()]
    assert inputs == ["www.sohu.com", "www.bad.example", "www.sohu.com"]
    assert writer.written == 3


def test_a_writer_without_a_file_counts_only_what_stdout_shows() -> None:
    stdout = io.BytesIO()
    writer = RecordWriter(Format(format_jsonl), stdout=stdout)
    write_all(writer, [(ok_result(), False), (ok_result(), True)])
    writer.close()
    assert stdout.getvalue().count(b"\n") == 1 and writer.written == 1


def test_a_new_file_is_started_afresh_unless_appending(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    for append, expected in ((False, 1), (True, 2), (False, 1)):
        writer = RecordWriter(Format(format_jsonl), file_path=str(out), append=append)
        write_all(writer, [(ok_result(), True)])
        writer.close()
        assert out.read_text().count("\n") == expected


class FailingStream(io.RawIOBase):
    """A stream without a file descriptor that takes `budget` bytes, then fails with EIO."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(data) > self.budget:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.budget -= len(data)
        self.data += data
        return len(data)


def test_a_failed_stdout_is_named_and_the_file_still_gets_every_record(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = ok_result()
    record = format_jsonl(result).encode()
    stdout = FailingStream(budget=len(record))
    writer = RecordWriter(
        Format(format_jsonl),
        stdout=stdout,  # type: ignore[arg-type]
        file_path=str(out),
        line_buffered=True,
    )
    write_all(writer, [(result, True)])
    with pytest.raises(OutputError) as raised:
        write_all(writer, [(result, True)])
    assert str(raised.value) == "cannot write to stdout: Input/output error"
    with pytest.raises(OutputError):  # the run stops: no more records are taken
        write_all(writer, [(result, True)])
    with pytest.raises(OutputError):
        writer.close()
    assert bytes(stdout.data) == record
    assert out.read_text().count("\n") == 2  # both records that reached the writer


def test_a_write_failing_halfway_cuts_the_torn_line_off_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk takes part of a batch, then fails (EIO, ENOSPC): the file ends on the last
    whole record, not inside one."""
    out = tmp_path / "out.jsonl"
    writer = RecordWriter(Format(format_jsonl), file_path=str(out))
    result = ok_result()
    record = format_jsonl(result).encode()
    budget = [len(record) * 2 + 17]  # two records and the start of a third
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if budget[0] <= 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        taken = real_write(fd, bytes(data)[: budget[0]])
        budget[0] -= taken
        return taken

    monkeypatch.setattr(os, "write", write)
    write_all(writer, [(result, True)] * 5)
    with pytest.raises(OutputError) as raised:
        writer.close()
    monkeypatch.undo()
    assert str(raised.value) == f"cannot write to {out}: Input/output error"
    assert out.read_bytes() == record * 2


def test_a_write_error_reported_at_close_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems (NFS) report a failed write only when the file is closed."""
    out = tmp_path / "out.jsonl"
    writer = RecordWriter(Format(format_jsonl), file_path=str(out))
    write_all(writer, [(ok_result(), True)])
    real_close, closed = os.close, []

    def close(fd: int) -> None:
        real_close(fd)
        closed.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "close", close)
    with pytest.raises(OutputError, match=f"cannot write to {out}: Input/output error"):
        writer.close()
    monkeypatch.undo()
    assert len(closed) == 1 and out.read_text().count("\n") == 1


# --- --format line ------------------------------------------------------------------------------


def test_line_format_is_one_line_with_the_facts_in_brackets() -> None:
    from fetcher.output import line_formatter

    headers = [("Server", "nginx"), ("Content-Type", "text/html"), ("Content-Length", "5")]
    result = ok_result(headers)
    assert line_formatter()(result) == (
        "http://www.sohu.com/ [200 OK] [nginx] [text/html] [5] [192.0.2.7] [6ms]\n"
    )
    # --fields chooses the brackets and their order; a fact the record lacks is left out.
    chosen = line_formatter(["host_ip", "server", "redirect_count"])
    assert chosen(result) == "http://www.sohu.com/ [200 OK] [192.0.2.7] [nginx]\n"


def test_line_format_shows_the_final_url_and_redirect_count() -> None:
    from fetcher.models import Redirect
    from fetcher.output import line_formatter

    result = ok_result()
    result.redirects = [Redirect("http://www.sohu.com/", 301, "https://www.sohu.com/")] * 2
    result.final_target = parse_target("https://www.sohu.com/")
    line = line_formatter(["redirect_count"])(result)
    assert line == "https://www.sohu.com/ [200 OK] [2 redirects]\n"


def test_line_format_failure_names_the_kind() -> None:
    from fetcher.errors import InvalidInput
    from fetcher.output import line_formatter

    assert line_formatter()(failed_result()) == (
        "http://www.bad.example/ [timeout] no response headers within 10 s\n"
    )
    bad = Result("not a host", None, "GET", "raw", error=InvalidInput("invalid host"))
    assert line_formatter()(bad) == "not a host [invalid-input] invalid host\n"


def test_line_format_colours_the_status_only_when_asked() -> None:
    from fetcher.output import line_formatter

    assert "\x1b" not in line_formatter()(ok_result())
    assert line_formatter(colour=True)(ok_result()).startswith(
        "http://www.sohu.com/ [\x1b[32m200 OK\x1b[0m]"
    )
    assert "[\x1b[31mtimeout\x1b[0m]" in line_formatter(colour=True)(failed_result())
    # A server's bytes never colour anything themselves.
    evil = ok_result([("Server", "\x1b[31mred")])
    assert "\x1b[31mred" not in line_formatter(["server"], colour=True)(evil)


def test_line_format_shows_the_certificates_expiry() -> None:
    from fetcher.output import _expiry, line_formatter

    result = _tls_result(verified=True)
    expires = result.tls.cert.not_after.strftime("%Y-%m-%d")  # type: ignore[union-attr]
    line = line_formatter(["tls_expiry", "audit_grade"])(result)
    assert line == f"https://www.example.com/ [200 OK] [cert expires {expires} (89 days)]\n"
    assert line_formatter(["tls_expiry"])(ok_result()) == "http://www.sohu.com/ [200 OK]\n"
    assert _expiry("2026-01-01T00:00:00Z", -3) == "cert expired 2026-01-01"
    from fetcher.audit import Audit

    result.audit = Audit(score=80, grade="B", tests={})
    assert line_formatter(["audit_grade", "tls_expiry"])(result) == (
        f"https://www.example.com/ [200 OK] [grade B] [cert expires {expires} (89 days)]\n"
    )


def test_console_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Console(False, True, False).colour
    assert not Console(False, False, False).colour
    assert not Console(False, True, False, no_colour=True).colour
    monkeypatch.setenv("NO_COLOR", "1")
    assert Console.detect().no_colour


def _tls_result(**verdict: object) -> Result:
    """An https answer whose handshake showed a trustme certificate for www.example.com that
    expires in 89 days and a bit."""
    import datetime

    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from fetcher.tls import TLSInfo

    result = ok_result()
    result.target = parse_target("https://www.example.com/")
    now = datetime.datetime.now(datetime.UTC)
    leaf = trustme.CA().issue_cert(
        "www.example.com",
        common_name="www.example.com",
        not_before=now - datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=89, hours=1),
    )
    pem = leaf.cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    result.timestamp = now.timestamp()
    result.tls = TLSInfo(
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
        "h2",
        der,
        "www.example.com",
        **verdict,  # type: ignore[arg-type]
    )
    return result


def test_text_output_has_one_tls_line() -> None:
    result = _tls_result(verified=True)
    expires = result.tls.cert.not_after.strftime("%Y-%m-%d")  # type: ignore[union-attr]
    assert format_text(result).splitlines()[0] == (
        "www.sohu.com tls > TLSv1.3 TLS_AES_256_GCM_SHA384 h2, CN=www.example.com,"
        f" expires {expires} (89 days), verified"
    )
    failed = _tls_result(verified=False, verify_error="hostname-mismatch")
    assert format_text(failed).splitlines()[0].endswith(", not verified: hostname-mismatch")
    unknown = _tls_result(verified=None, verify_error="issuer-unchecked")
    unknown.tls.der = None  # type: ignore[union-attr]
    unknown.tls.capture_error = "certificate not captured: timed out"  # type: ignore[union-attr]
    assert format_text(unknown).splitlines()[0] == (
        "www.sohu.com tls > TLSv1.3 TLS_AES_256_GCM_SHA384 h2, certificate not captured:"
        " timed out, verdict unknown: issuer-unchecked"
    )
    assert " tls > " not in format_text(ok_result())


def test_csv_appends_the_tls_columns_then_the_audit_ones() -> None:
    from fetcher.models import CSV_COLUMNS

    assert CSV_COLUMNS[-8:] == (
        "tls_version", "cert_subject_cn", "cert_issuer_cn", "cert_not_after", "cert_days_left",
        "tls_verified", "audit_grade", "audit_score",
    )  # fmt: skip
    row = _tls_result(verified=True).to_row()
    assert (row["tls_version"], row["cert_subject_cn"], row["tls_verified"]) == (
        "TLSv1.3", "www.example.com", True,
    )  # fmt: skip
    assert row["cert_days_left"] == 89 and row["cert_not_after"].endswith("Z")
    assert row["cert_issuer_cn"] is None  # trustme's CA has no CN, only O and OU
    plain = ok_result().to_row()
    assert all(plain[name] is None for name in CSV_COLUMNS[-6:])


def test_text_ends_with_the_audit_line_of_what_cost_points() -> None:
    from fetcher.audit import audit

    result = ok_result([("X-Content-Type-Options", "nosniff")])
    result.audit = audit(result.headers, url="https://www.sohu.com/")
    *_, line = format_text(result).splitlines()
    assert line == (
        "www.sohu.com audit > D 35: csp-not-implemented -25, hsts-not-implemented -20,"
        " x-frame-options-not-implemented -20"
    )
    hardened = [
        ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
        ("Strict-Transport-Security", "max-age=31536000"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    result.audit = audit(hardened, url="https://www.sohu.com/")
    assert format_text(result).splitlines()[-1] == "www.sohu.com audit > A+ 115"
    row = result.to_row()
    assert (row["audit_grade"], row["audit_score"]) == ("A+", 115)
