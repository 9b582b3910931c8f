"""The command line: CliRunner for parsing and exit codes, a real process for pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from fetcher import __version__
from fetcher.cli import HELP_GROUPS, afetch, config_keys
from fetcher.config import Config
from fetcher.loopback import LoopbackHosts, recording, replies, response

ROOT = Path(__file__).resolve().parent.parent
OK = response("200 OK", [("Content-Type", "text/plain")])


@pytest.fixture(scope="module")
def ok_port(hosts: LoopbackHosts) -> int:
    return hosts.serve(replies(OK))


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(afetch, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_arguments_text_output_and_exit_zero(ok_port: int) -> None:
    code, out, err = invoke(f"127.0.0.1:{ok_port}")
    assert code == 0, err
    assert out.splitlines() == [
        f"127.0.0.1:{ok_port} header > HTTP/1.1 200 OK",
        f"127.0.0.1:{ok_port} header > Content-Type: text/plain",
        f"127.0.0.1:{ok_port} header > Content-Length: 6",
        f"127.0.0.1:{ok_port} header > Connection: close",
    ]
    assert err == ""


def test_json_from_list_file_with_failures_exits_one(
    ok_port: int, hosts: LoopbackHosts, tmp_path: Path
) -> None:
    listing = tmp_path / "hosts.txt"
    refused = hosts.refused()
    listing.write_text(f"# my hosts\n127.0.0.1:{ok_port}\n\nbad host\n127.0.0.1:{refused}\n")
    code, out, _ = invoke("--json", "-l", str(listing))
    assert code == 1
    records = {r["input"]: r for r in map(json.loads, out.splitlines())}
    assert set(records) == {f"127.0.0.1:{ok_port}", "bad host", f"127.0.0.1:{refused}"}
    assert records[f"127.0.0.1:{ok_port}"]["status_code"] == 200
    assert records["bad host"]["error"]["kind"] == "invalid-input"
    assert records[f"127.0.0.1:{refused}"]["error"]["kind"] == "connection-refused"


def test_stdin_when_no_targets(ok_port: int) -> None:
    code, out, _ = invoke("--format", "jsonl", stdin=f"127.0.0.1:{ok_port}\n")
    assert code == 0
    assert json.loads(out)["status_code"] == 200


def test_list_dash_reads_stdin_alongside_arguments(ok_port: int) -> None:
    code, out, _ = invoke("--json", f"127.0.0.1:{ok_port}", "-l", "-", stdin="bad host\n")
    assert code == 1
    assert len(out.splitlines()) == 2


def test_output_file_appends_the_same_records(ok_port: int, tmp_path: Path) -> None:
    out_file = tmp_path / "out.jsonl"
    for _ in range(2):
        code, out, _ = invoke("--json", "-o", str(out_file), "--append", f"127.0.0.1:{ok_port}")
        assert code == 0
    lines = out_file.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["url"] == json.loads(out)["url"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["-c", "0", "x"], "--concurrency", id="concurrency"),
        pytest.param(["-t", "-1", "x"], "--timeout", id="timeout"),
        pytest.param(["--backend", "curl", "x"], "--backend", id="backend"),
        pytest.param(["-X", "GE T", "x"], "HTTP token", id="method"),
        pytest.param(["-H", "no colon", "x"], "Name: value", id="header"),
        pytest.param(["-l", "/no/such/file"], "does not exist", id="missing-list"),
        pytest.param(["--nope"], "No such option", id="unknown-option"),
        pytest.param(["--scheme", "ftp", "x"], "--scheme", id="scheme"),
        pytest.param(["-p", "80,http", "x"], "invalid port 'http'", id="ports"),
        pytest.param(["-p", "0-10", "x"], "ports are 1-65535", id="ports-range"),
        pytest.param(["--max-redirects", "-1", "x"], "--max-redirects", id="max-redirects"),
        pytest.param(["--retries", "many", "x"], "--retries", id="retries"),
        pytest.param(["--rate", "-2", "x"], "--rate", id="rate"),
        pytest.param(["--per-host", "-1", "x"], "--per-host", id="per-host"),
        pytest.param(["--match-status", "2x", "x"], "invalid status '2x'", id="match-status"),
        pytest.param(["--filter-status", "999", "x"], "--filter-status", id="filter-status"),
        pytest.param(["--format", "xml", "x"], "--format", id="format"),
        pytest.param(
            ["--json", "--fields", "url,bogus", "x"], "unknown field 'bogus'", id="fields"
        ),
        pytest.param(
            ["--format", "csv", "--fields", "headers", "x"], "for --format csv", id="csv-fields"
        ),
        pytest.param(["--fields", "url", "x"], "jsonl and csv only", id="fields-text"),
        pytest.param(["--http1.0=maybe", "x"], "--http1.0", id="http10-takes-no-value"),
        pytest.param(["--http1.0", "--backend", "httpx", "x"], "HTTP/1.1", id="http10-httpx"),
    ],
)
def test_usage_errors_are_one_line_and_exit_two(args: list[str], message: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("afetch: error: ")
    assert message in err


def test_no_targets_on_a_terminal_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from fetcher import output

    monkeypatch.setattr(output, "_isatty", lambda stream: True)
    code, _, err = invoke()
    assert code == 2 and "no targets" in err


def test_version_and_help() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and __version__ in out
    code, out, _ = invoke("--help")
    assert code == 0 and "--concurrency" in out and "Exit status" in out


def test_example_config_lists_every_option_with_its_default() -> None:
    with open(ROOT / "config" / "afetch.toml", "rb") as handle:
        example = tomllib.load(handle)
    params = {p.name: p for p in afetch.params}
    keys = config_keys(afetch)
    commented = {"cacert", "proxy", "scheme"}  # no default value: shown commented out
    assert set(example) | commented == set(keys)
    # Each key, set or commented out, comes right after a comment saying what it does.
    lines = (ROOT / "config" / "afetch.toml").read_text().splitlines()
    for key in keys:
        at = next(
            i
            for i, line in enumerate(lines)
            if line.lstrip("# ").startswith((f"{key} =", f'"{key}" ='))
        )
        assert lines[at - 1].startswith("# "), key
    for key, value in example.items():
        param = params[keys[key]]
        default = param.get_default(click.Context(afetch))
        if param.multiple:  # click's default for a repeatable option is "none given"
            default = list(default) if isinstance(default, (list, tuple)) else []
        assert default == value, key


def test_config_file_and_environment_precedence(
    ok_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "afetch.toml"
    config.write_text('format = "jsonl"\nmethod = "HEAD"\n')
    code, out, _ = invoke("--config", str(config), f"127.0.0.1:{ok_port}")
    assert code == 0 and json.loads(out)["method"] == "HEAD"  # file beats built-in default
    monkeypatch.setenv("AFETCH_METHOD", "GET")
    code, out, _ = invoke("--config", str(config), f"127.0.0.1:{ok_port}")
    assert json.loads(out)["method"] == "GET"  # environment beats file
    code, out, _ = invoke("--config", str(config), "-X", "HEAD", f"127.0.0.1:{ok_port}")
    assert json.loads(out)["method"] == "HEAD"  # command line beats environment


def test_user_config_file_is_read(ok_port: int, tmp_path: Path) -> None:
    user = tmp_path / "xdg" / "afetch" / "config.toml"  # conftest points XDG_CONFIG_HOME here
    user.parent.mkdir(parents=True)
    user.write_text('format = "jsonl"\n')
    code, out, _ = invoke(f"127.0.0.1:{ok_port}")
    assert code == 0 and json.loads(out)["status_code"] == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("bogus = 1\n", "unknown key 'bogus'", id="unknown-key"),
        pytest.param("concurrency = 'lots'\n", "key 'concurrency'", id="bad-value"),
        pytest.param("concurrency = \n", "invalid TOML", id="bad-toml"),
    ],
)
def test_bad_config_file(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code, _, err = invoke("--config", str(config), "x")
    assert code == 2 and message in err and err.count("\n") == 1


def run_afetch(
    *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fetcher", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_python_dash_m_and_stdin_pipe(ok_port: int) -> None:
    done = run_afetch("--json", stdin=f"127.0.0.1:{ok_port}\n".encode() * 3)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert done.stderr == b""


def test_closed_stdout_ends_the_run_quietly(ok_port: int) -> None:
    lines = f"127.0.0.1:{ok_port}\n".encode() * 3000
    shell = f"{sys.executable} -m fetcher -c 20 | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], input=lines, capture_output=True, timeout=60
    )
    assert done.stdout.count(b"\n") == 1
    assert done.stderr == b"", done.stderr
    assert b"Traceback" not in done.stderr


# --- probe features end to end through the command line -----------------------------------


@pytest.fixture(scope="module")
def routes(hosts: LoopbackHosts) -> int:
    """/ -> 200, /moved -> 301 to /, /missing -> 404, /gone -> 410."""

    async def script(reader, writer):  # type: ignore[no-untyped-def]
        from fetcher.loopback import read_request

        request = await read_request(reader)
        path = request.split(b" ")[1] if request else b"/"
        answers = {
            b"/moved": response("301 Moved Permanently", [("Location", "/")]),
            b"/missing": response("404 Not Found"),
            b"/gone": response("410 Gone"),
        }
        writer.write(answers.get(path, OK))

    return hosts.serve(script)


def records(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_follow_redirects_from_the_command_line(routes: int) -> None:
    code, out, _ = invoke("--json", "-L", f"127.0.0.1:{routes}/moved")
    [record] = records(out)
    assert code == 0 and record["status_code"] == 200
    assert record["final_url"] == f"http://127.0.0.1:{routes}/"
    assert record["redirects"] == [
        {"url": f"http://127.0.0.1:{routes}/moved", "status_code": 301, "location": "/"}
    ]
    code, out, _ = invoke("--json", f"127.0.0.1:{routes}/moved")
    assert records(out)[0]["status_code"] == 301  # not followed without -L


def test_ports_label_each_port_in_text(routes: int, hosts: LoopbackHosts) -> None:
    refused = hosts.refused()
    code, out, _ = invoke("-p", f"{routes},{refused}", "127.0.0.1")
    assert code == 1
    assert f"127.0.0.1:{routes} header > HTTP/1.1 200 OK" in out.splitlines()
    assert f"127.0.0.1:{refused} error > connection-refused: connection refused" in out


def test_scheme_auto_from_the_command_line(hosts: LoopbackHosts) -> None:
    port = hosts.serve(replies(OK, wait_for_request=False))  # plain HTTP: TLS fails at once
    code, out, _ = invoke("--json", "--scheme", "auto", f"127.0.0.1:{port}")
    [record] = records(out)
    assert code == 0 and record["url"] == f"http://127.0.0.1:{port}/"


def test_match_and_filter_status_hide_records_but_count_them(routes: int) -> None:
    targets = [f"127.0.0.1:{routes}{path}" for path in ("/", "/moved", "/missing", "/gone")]
    code, out, err = invoke("--json", "--match-status", "2xx,3xx", "--stats", *targets)
    assert code == 0
    assert sorted(r["status_code"] for r in records(out)) == [200, 301]  # type: ignore[type-var]
    assert "2 filtered out" in err and "4xx 2" in err
    code, out, err = invoke("--json", "--filter-status", "404,3xx", "--stats", *targets)
    assert sorted(r["status_code"] for r in records(out)) == [200, 410]  # type: ignore[type-var]
    assert "2 filtered out" in err


def test_failures_are_hidden_by_match_status_but_still_fail_the_run(
    routes: int, hosts: LoopbackHosts
) -> None:
    code, out, err = invoke(
        "--match-status", "200", "--stats", f"127.0.0.1:{routes}", f"127.0.0.1:{hosts.refused()}"
    )
    assert code == 1
    assert out.count(" header > HTTP/1.1 200 OK") == 1 and "error >" not in out
    assert "connection-refused 1" in err


def test_stats_summary_on_stderr(routes: int) -> None:
    code, out, err = invoke("--stats", "--json", f"127.0.0.1:{routes}", "bad host")
    lines = err.splitlines()
    assert code == 1 and len(records(out)) == 2
    assert lines[0].startswith("afetch: 2 targets in ") and "1 answered, 1 failed" in lines[0]
    assert lines[1:3] == ["  status   2xx 1", "  errors   invalid-input 1"]
    assert lines[3].startswith("  latency  p50 ")


def test_csv_with_fields(routes: int) -> None:
    code, out, _ = invoke(
        "--format", "csv", "--fields", "input,status_code,error_kind", f"127.0.0.1:{routes}"
    )
    assert code == 0
    assert out.splitlines() == ["input,status_code,error_kind", f"127.0.0.1:{routes},200,"]


def test_json_fields(routes: int) -> None:
    code, out, _ = invoke("--json", "--fields", "status_code,url", f"127.0.0.1:{routes}")
    assert out == f'{{"status_code":200,"url":"http://127.0.0.1:{routes}/"}}\n'


def test_request_switches_reach_the_server(hosts: LoopbackHosts) -> None:
    seen: list[bytes] = []

    async def record(reader, writer):  # type: ignore[no-untyped-def]
        from fetcher.loopback import read_request

        seen.append(await read_request(reader))
        writer.write(OK)

    port = hosts.serve(record)
    code, _, _ = invoke(
        "-X", "head", "-H", "X-One: 1", "-H", "X-Two: 2", "-A", "probe/1", "--http1.0",
        f"127.0.0.1:{port}/p",
    )  # fmt: skip
    request = seen[0].decode().lower()
    assert code == 0 and request.startswith("head /p http/1.0\r\n")
    assert "x-one: 1\r\n" in request and "x-two: 2\r\n" in request
    assert "user-agent: probe/1\r\n" in request


def test_pacing_options_are_accepted(routes: int) -> None:
    code, out, _ = invoke(
        "--json", "--retries", "2", "--rate", "100", "--per-host", "1", "-c", "3",
        *[f"127.0.0.1:{routes}/{i}" for i in range(4)],
    )  # fmt: skip
    assert code == 0 and len(records(out)) == 4


# --- progress: a terminal on stderr only, never with -q ------------------------------------


def test_progress_line_on_a_terminal(routes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from fetcher import output

    monkeypatch.setattr(output, "_isatty", lambda stream: True)
    code, out, err = invoke(f"127.0.0.1:{routes}", f"127.0.0.1:{routes}/missing")
    assert code == 0 and out.count("header > HTTP/1.1") == 2
    assert "2/2 done" in err and "2 ok" in err and "\x1b[2K" in err
    code, out, err = invoke("-q", f"127.0.0.1:{routes}")
    assert code == 0 and err == ""


def test_silent_leaves_only_errors_on_stderr(
    routes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-s: no progress line, no warning, no --resume note; an error is still said."""
    from fetcher import output, runner

    monkeypatch.setattr(output, "_isatty", lambda stream: True)
    monkeypatch.setattr(runner, "fit_concurrency", lambda n: (7, "concurrency lowered"))
    real_run, concurrency = runner.run, []

    def run(config: Config, *args: Any, **kwargs: Any) -> runner.Outcome:
        concurrency.append(config.limits.concurrency)
        return real_run(config, *args, **kwargs)

    monkeypatch.setattr(runner, "run", run)
    out_file = tmp_path / "out.jsonl"
    code, _, err = invoke("-o", str(out_file), f"127.0.0.1:{routes}")
    assert code == 0 and "warning: concurrency lowered" in err and "1/1 done" in err
    code, out, err = invoke("-s", "-o", str(out_file), "--resume", f"127.0.0.1:{routes}")
    assert (code, out, err) == (0, "", "")  # nothing fetched, nothing said
    code, out, err = invoke("-s", f"127.0.0.1:{routes}")
    assert code == 0 and "header > HTTP/1.1 200 OK" in out and err == ""
    assert concurrency == [7, 7, 7]  # lowered all the same: -s only keeps it quiet
    code, _, err = invoke("-s", "--json", "-o", "/dev/full", f"127.0.0.1:{routes}")
    assert code == 74
    assert err == "afetch: error: cannot write to /dev/full: No space left on device\n"


def test_no_progress_in_a_pipe(routes: int) -> None:
    code, _, err = invoke(f"127.0.0.1:{routes}")
    assert code == 0 and err == ""


def test_progress_without_a_countable_total_has_no_eta(
    routes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetcher import output

    monkeypatch.setattr(output, "_isatty", lambda stream: True)
    code, _, err = invoke("-l", "-", stdin=f"127.0.0.1:{routes}\n")
    assert code == 0 and "1 done" in err and "/1 done" not in err and "ETA" not in err


def test_count_targets_for_the_eta(tmp_path: Path) -> None:
    from fetcher.inputs import count_targets

    listing = tmp_path / "hosts.txt"
    listing.write_text("# comment\na.example\n\nb.example\nhttps://c.example/\n")
    assert count_targets(["x.example"], [str(listing)]) == 4
    assert count_targets([], [str(listing)], lambda line: 3) == 9
    assert count_targets(["x"], ["-"]) is None  # stdin: not countable
    assert count_targets([], ["/dev/null"]) is None  # not a regular file
    assert count_targets([], [str(tmp_path / "gone")]) is None


# --- configuration: file < environment < command line, every key and variable --------------


def test_every_option_has_an_environment_variable_named_after_it(
    routes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFETCH_FORMAT", "jsonl")
    monkeypatch.setenv("AFETCH_FIELDS", "input,status_code,final_url")
    monkeypatch.setenv("AFETCH_FOLLOW_REDIRECTS", "1")
    monkeypatch.setenv("AFETCH_HEADER", "X-One: 1\nX-Two: 2")  # one header per line
    monkeypatch.setenv("AFETCH_HTTP1_0", "true")
    code, out, _ = invoke(f"127.0.0.1:{routes}/moved")
    assert code == 0
    assert records(out) == [
        {
            "input": f"127.0.0.1:{routes}/moved",
            "status_code": 200,
            "final_url": f"http://127.0.0.1:{routes}/",
        }
    ]
    from fetcher.cli import config_options, env_name

    assert {o.envvar for o in config_options(afetch).values()} == {
        env_name(key) for key in config_keys(afetch)
    }
    assert env_name("http1.0") == "AFETCH_HTTP1_0"


def test_precedence_for_every_layer(
    routes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "xdg" / "afetch" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('format = "jsonl"\nfields = "status_code"\nmatch-status = "4xx"\n')
    target = f"127.0.0.1:{routes}/missing"
    assert invoke(target)[1] == '{"status_code":404}\n'  # the user file beats the defaults
    explicit = tmp_path / "other.toml"
    explicit.write_text('format = "csv"\nfields = "status_code"\n')
    assert invoke("--config", str(explicit), target)[1] == "status_code\n404\n"  # replaces it
    monkeypatch.setenv("AFETCH_FILTER_STATUS", "404")
    assert invoke(target)[1] == ""  # the environment adds to the file
    assert invoke("--filter-status", "", target)[1] == '{"status_code":404}\n'  # CLI wins
    monkeypatch.setenv("AFETCH_CONFIG", str(explicit))
    assert invoke(target)[1] == "status_code\n"  # AFETCH_CONFIG names the file


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        pytest.param("AFETCH_TIMEOUT", "soon", "AFETCH_TIMEOUT: ", id="timeout"),
        pytest.param("AFETCH_PORTS", "80-", "AFETCH_PORTS: ", id="ports"),
        pytest.param("AFETCH_MATCH_STATUS", "ok", "AFETCH_MATCH_STATUS: ", id="match-status"),
        pytest.param("AFETCH_HEADER", "broken", "AFETCH_HEADER: ", id="header"),
    ],
)
def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = invoke("x")
    assert code == 2 and err.startswith(f"afetch: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "key"),
    [
        pytest.param('ports = "x"\n', "ports", id="ports"),
        pytest.param('"http1.0" = 3\n', "http1.0", id="bool-as-number"),
        pytest.param("rate = -1\n", "rate", id="rate"),
        pytest.param("retries = { a = 1 }\n", "retries", id="table"),
        pytest.param('header = "X: 1"\nconcurrency = "300"\n', "concurrency", id="string"),
    ],
)
def test_bad_config_value_names_the_key(tmp_path: Path, content: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code, _, err = invoke("--config", str(config), "x")
    assert code == 2 and f"key {key!r}" in err and err.count("\n") == 1


# --- --help and shell completion -----------------------------------------------------------


def test_help_is_grouped_one_line_per_option_with_defaults() -> None:
    result = CliRunner().invoke(afetch, ["--help"], terminal_width=98)
    text = result.stdout
    sections = ["Input options:", "Request options:", "Concurrency options:", "Output options:"]
    positions = [text.index(section) for section in sections]
    assert positions == sorted(positions)
    body = text[positions[0] : text.index("Exit status")]
    option_lines = [line for line in body.splitlines() if line.strip() and line[0] == " "]
    assert all(line.startswith(("  -", "  --")) for line in option_lines), option_lines
    for flag, default in [
        ("--scheme", "http"), ("--ports", "none"), ("--timeout", "10.0"),
        ("--max-redirects", "10"), ("--concurrency", "100"), ("--format", "text"),
        ("--rate", "0: no cap"),
    ]:  # fmt: skip
        line = next(line for line in option_lines if flag in line)
        assert line.endswith(f"[default: {default}]"), line
    for name in HELP_GROUPS["Request"]:
        assert name in {p.name for p in afetch.params}


def test_bash_completion_script_and_choices() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fetcher"],
        env={**os.environ, "_AFETCH_COMPLETE": "bash_source"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and b"_afetch_completion" in done.stdout
    env = {"_AFETCH_COMPLETE": "bash_complete", "COMP_WORDS": "afetch --scheme ", "COMP_CWORD": "2"}
    result = CliRunner().invoke(afetch, [], env=env, prog_name="afetch")
    assert result.stdout.split() == ["plain,http", "plain,https", "plain,auto"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "auto"])
def test_event_loop_choice(ok_port: int, loop: str) -> None:
    code, out, err = invoke("--loop", loop, "--json", f"127.0.0.1:{ok_port}")
    assert code == 0, err
    assert json.loads(out)["status_code"] == 200


def test_missing_uvloop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    code, _, err = invoke("--loop", "uvloop", "x")
    assert code == 2 and "uvloop is not installed" in err
    from fetcher.runner import loop_factory

    assert loop_factory("auto") is None  # falls back to asyncio's loop quietly


def test_a_bug_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from fetcher import runner

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run", broken)
    code, out, err = invoke("x")
    assert code == 70
    assert err == "afetch: internal error: RuntimeError: boom\n"
    monkeypatch.setenv("AFETCH_DEBUG", "1")
    with pytest.raises(RuntimeError):
        invoke("x")


def test_version_and_help_load_neither_engine_nor_backends() -> None:
    probe = (
        "import sys\n"
        "from fetcher.cli import afetch\n"
        "for args in (['--version'], ['--help']):\n"
        "    try:\n"
        "        afetch.main(args, prog_name='afetch')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('fetcher.engine', 'fetcher.backends.raw', 'httpx', 'uvloop',\n"
        "                     'aiodns', 'rich') if m in sys.modules]\n"
        "print('LOADED', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert done.stdout.decode().splitlines()[-1] == "LOADED []", done.stdout + done.stderr


def test_two_host_headers_are_a_usage_error() -> None:
    code, out, err = invoke("-H", "Host: a.example", "-H", "host: b.example", "127.0.0.1:1")
    assert (code, out) == (2, "")
    assert err.strip() == "afetch: error: more than one Host header (a server answers two with 400)"


@pytest.mark.parametrize("backend", ["raw", "httpx"])
@pytest.mark.parametrize(
    "content", [b"root:x:0:0:root:/root:/bin/bash\n", b""], ids=["not-pem", "empty"]
)
def test_a_cacert_file_without_certificates_is_a_usage_error(
    hosts: LoopbackHosts, tmp_path: Path, backend: str, content: bytes
) -> None:
    """A configuration error, before anything is fetched: not a tls-error blamed on every host
    (raw), nor an internal error (httpx)."""
    from fetcher.loopback import recording

    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    bad = tmp_path / "passwd"
    bad.write_bytes(content)
    targets = [f"https://127.0.0.1:{port}/", f"127.0.0.1:{port}"]
    code, out, err = invoke("--backend", backend, "--cacert", str(bad), *targets)
    assert (code, out, seen) == (2, "", [])
    assert err.startswith(f"afetch: error: --cacert {bad}: ") and err.count("\n") == 1


# --- the -o file: every record, a new file per run, --append, -o -, write errors ----------


def test_the_output_file_gets_the_records_the_status_filters_hide(
    ok_port: int, hosts: LoopbackHosts, tmp_path: Path
) -> None:
    out_file = tmp_path / "f.jsonl"
    both = [f"127.0.0.1:{ok_port}", f"127.0.0.1:{hosts.refused()}"]
    code, out, err = invoke("-q", "--match-status", "5xx", "-o", str(out_file), "--json", *both)
    assert (code, out, err) == (1, "", "")
    assert sorted(r["input"] for r in records(out_file.read_text())) == sorted(both)  # type: ignore[type-var]
    code, out, err = invoke("--filter-status", "2xx", "-o", str(out_file), "--resume", *both)
    assert code == 0 and out == ""  # nothing left to fetch
    assert err == f"afetch: resume: 2 targets skipped, already recorded in {out_file}\n"
    assert len(records(out_file.read_text())) == 2


def test_a_new_run_starts_the_output_file_afresh_and_append_adds_to_it(
    ok_port: int, tmp_path: Path
) -> None:
    out_file = tmp_path / "out.jsonl"
    for extra, expected in (([], 1), ([], 1), (["--append"], 2), (["--resume"], 2)):
        code, _, _ = invoke("-o", str(out_file), *extra, f"127.0.0.1:{ok_port}")
        assert code == 0
        assert len(records(out_file.read_text())) == expected, extra


def test_append_repairs_a_torn_last_line_first(ok_port: int, tmp_path: Path) -> None:
    out_file = tmp_path / "out.jsonl"
    out_file.write_text('{"input": "a"}\n{"input": "b')  # as left by kill -9
    code, _, _ = invoke("-o", str(out_file), "--append", f"127.0.0.1:{ok_port}")
    assert code == 0
    assert [r["input"] for r in records(out_file.read_text())] == ["a", f"127.0.0.1:{ok_port}"]


def test_dash_o_means_json_lines_on_stdout(
    ok_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = invoke("--json", "-o", "-", f"127.0.0.1:{ok_port}")
    assert code == 0 and records(out)[0]["status_code"] == 200
    assert not (tmp_path / "-").exists()
    code, out, err = invoke("-o", "-", f"127.0.0.1:{ok_port}")
    assert code == 2 and out == "" and "-o - writes JSON Lines to stdout" in err
    for flag in ("--append", "--resume"):
        code, _, err = invoke("--json", "-o", "-", flag, "x")
        assert code == 2 and f"{flag} needs -o FILE" in err
    code, _, err = invoke("--append", "x")
    assert code == 2 and err == "afetch: error: --append needs -o FILE: the file it continues\n"


def test_a_full_disk_is_one_line_naming_the_file_and_exit_74(ok_port: int) -> None:
    done = run_afetch("--json", "-o", "/dev/full", f"127.0.0.1:{ok_port}")
    assert done.returncode == 74
    assert done.stderr == b"afetch: error: cannot write to /dev/full: No space left on device\n"
    assert records(done.stdout.decode())[0]["status_code"] == 200  # stdout still got it
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "fetcher", f"127.0.0.1:{ok_port}"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert done.returncode == 74
    assert done.stderr == b"afetch: error: cannot write to stdout: No space left on device\n"


FILE_SIZE_LIMIT = 20_000  # bytes: a few dozen records, then the kernel refuses more (EFBIG)


def limit_file_size() -> None:
    """In the child: files may grow to FILE_SIZE_LIMIT bytes; a write past it takes what fits,
    and the next one fails with EFBIG (SIGXFSZ, which would kill the process, is ignored)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.parametrize("destination", ["file", "stdout"])
def test_a_write_failing_halfway_leaves_whole_records(
    ok_port: int, tmp_path: Path, destination: str
) -> None:
    out_file = tmp_path / "out.jsonl"
    lines = f"127.0.0.1:{ok_port}\n".encode() * 200  # some 100 KB of records
    args = ["--json", "-o", str(out_file)] if destination == "file" else ["--json"]
    # Coverage writes its data file at exit, which the file-size limit would refuse.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    with open(tmp_path / "stdout.jsonl", "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "fetcher", "-c", "20", *args],
            input=lines,
            stdout=stdout if destination == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
            env=env,
            preexec_fn=limit_file_size,  # noqa: PLW1509 - the child only
        )
    name = str(out_file) if destination == "file" else "stdout"
    assert done.returncode == 74, done.stderr
    assert done.stderr == f"afetch: error: cannot write to {name}: File too large\n".encode()
    written = (out_file if destination == "file" else tmp_path / "stdout.jsonl").read_bytes()
    assert written.endswith(b"\n") and len(written) <= FILE_SIZE_LIMIT
    assert all(json.loads(line)["status_code"] == 200 for line in written.splitlines())
    assert len(written.splitlines()) >= 10


def test_an_output_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path) -> None:
    """Said before any fetch, naming the file: the runner opens it while preparing the run."""
    missing = tmp_path / "no" / "such" / "dir" / "out.jsonl"
    code, out, err = invoke("-o", str(missing), "127.0.0.1:1")
    assert (code, out) == (2, "")
    assert err == f"afetch: error: cannot use {missing}: No such file or directory\n"


def test_the_output_file_cannot_be_an_input_file(tmp_path: Path) -> None:
    """Starting the -o file afresh would empty the list before it is read."""
    listing = tmp_path / "hosts.txt"
    listing.write_text("example.com\n")
    code, out, err = invoke("-l", str(listing), "-o", str(listing))
    assert code == 2 and out == "" and "is also read with -l" in err
    assert listing.read_text() == "example.com\n"


# --- config file values: the type each option declares ------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('concurrency = "300"', 'expected an integer, got a string "300"', id="int"),
        pytest.param('timeout = "5"', 'expected a number, got a string "5"', id="number"),
        pytest.param('insecure = "yes"', 'expected a boolean, got a string "yes"', id="flag"),
        pytest.param("method = 1", "expected a string, got an integer 1", id="string"),
        pytest.param("ports = 8.5", "expected a string or an integer, got a float 8.5", id="text"),
        pytest.param(
            "header = [1.5]", "expected a list of strings or integers, got a float 1.5", id="texts"
        ),
        pytest.param(
            "cert-expires-within = -1",
            "Invalid value for '--cert-expires-within': expected a whole number of days"
            " (0 or more), got '-1'",
            id="parsed",
        ),
        pytest.param("resolver = [53]", "expected a list of strings, got an integer 53", id="list"),
    ],
)
def test_config_value_of_the_wrong_type_is_a_usage_error(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(content + "\n")
    code, out, err = invoke("--config", str(config), "x")
    assert code == 2 and out == ""
    key = content.partition(" ")[0]
    assert err == f"afetch: error: {config}: key {key!r}: {message}\n"


def test_config_types_come_from_the_option_declarations() -> None:
    from fetcher.cli import config_schema

    schema = config_schema(afetch)
    assert set(schema) == set(config_keys(afetch))
    for key, entry in schema.items():
        param = next(p for p in afetch.params if p.name == entry.name)
        assert entry.repeated == param.multiple, key
    types = {key: (entry.type, entry.repeated) for key, entry in schema.items()}
    assert types["concurrency"] == types["retries"] == ("integer", False)  # IntRange
    assert types["timeout"] == types["rate"] == ("number", False)  # FloatRange
    assert types["insecure"] == types["http1.0"] == ("boolean", False)  # flags
    assert types["method"] == types["cacert"] == ("string", False)
    assert types["ports"] == types["workers"] == ("text", False)  # a parser: "80" or 80
    assert types["resolver"] == ("string", True) and types["header"] == ("text", True)


def test_config_numbers_flags_and_a_lone_header_reach_the_run(
    hosts: LoopbackHosts, tmp_path: Path
) -> None:
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    config = tmp_path / "config.toml"
    config.write_text(
        'header = "X-One: 1"\ntimeout = 5\nconcurrency = 3\n"http1.0" = true\nformat = "jsonl"\n'
        f"ports = {port}\ncert-expires-within = 0\n"  # numbers, read as their digits
    )
    code, out, err = invoke("--config", str(config), "--cert-expires-within", "", "127.0.0.1")
    assert code == 0, err
    assert json.loads(out)["status_code"] == 200
    request = seen[0].decode().lower()
    assert request.startswith("get / http/1.0\r\n") and "x-one: 1\r\n" in request


# --- options that contradict each other, or say nothing ------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["--json", "--format", "csv"], {}, "--json conflicts with --format csv", id="csv"
        ),
        pytest.param(
            ["--format", "text", "--json"], {}, "--json conflicts with --format text", id="text"
        ),
        pytest.param(["-p", ""], {}, "--ports: empty port list", id="empty-ports"),
        pytest.param(["--ports", " , "], {}, "--ports: empty port list", id="commas"),
        pytest.param([], {"AFETCH_PORTS": ","}, "AFETCH_PORTS: empty port list", id="env-ports"),
    ],
)
def test_conflicting_or_empty_options_are_refused(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = invoke(*args, "127.0.0.1")
    assert (code, out, err) == (2, "", f"afetch: error: {message}\n")


def test_json_agrees_with_format_jsonl_and_beats_a_configured_format(
    ok_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke("--json", "--format", "jsonl", f"127.0.0.1:{ok_port}")
    assert code == 0 and json.loads(out)["status_code"] == 200
    monkeypatch.setenv("AFETCH_FORMAT", "csv")  # the command line beats the environment
    code, out, _ = invoke("--json", f"127.0.0.1:{ok_port}")
    assert code == 0 and json.loads(out)["status_code"] == 200


def test_an_empty_ports_key_in_a_config_file_is_the_default(ok_port: int, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('ports = ""\n')  # as config/afetch.toml writes the built-in default
    code, out, err = invoke("--config", str(config), "--json", f"127.0.0.1:{ok_port}")
    assert code == 0, err
    assert json.loads(out)["port"] == ok_port


def test_format_line_after_redirects_names_the_final_url(hosts: LoopbackHosts) -> None:
    final = hosts.serve(replies(response("200 OK", [("Server", "demo")])))
    moved = response("302 Found", [("Location", f"http://127.0.0.1:{final}/end")])
    start = hosts.serve(replies(moved))
    code, out, err = invoke("--format", "line", "-L", f"127.0.0.1:{start}", "127.0.0.1:1")
    assert code == 1, err
    lines = sorted(out.splitlines())
    assert lines[0] == "http://127.0.0.1:1/ [connection-refused] connection refused"
    assert lines[1].startswith(f"http://127.0.0.1:{final}/end [200 OK] [demo] [6] [127.0.0.1] [")
    assert lines[1].endswith("ms] [1 redirect]") and "\x1b" not in out


def test_help_never_splits_a_default_at_80_columns() -> None:
    result = CliRunner().invoke(afetch, ["--help"], terminal_width=80)
    lines = result.stdout.splitlines()
    shown = [line for line in lines if "[default:" in line]
    assert len(shown) > 10 and all("]" in line.split("[default:")[1] for line in shown), shown
    assert "\u00a0" not in result.stdout and max(map(len, lines)) <= 80


def test_a_mistyped_variable_gets_one_warning_with_the_nearest_name(
    ok_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFETCH_CONCURENCY", "3")
    monkeypatch.setenv("AFETCH_NOTHING_LIKE_IT", "1")
    monkeypatch.setenv("AFETCH_TIMEOUT", "5")  # a real one: no warning
    code, _, err = invoke(f"127.0.0.1:{ok_port}")
    assert code == 0
    assert err.splitlines() == [
        "afetch: warning: AFETCH_CONCURENCY: no such option; did you mean AFETCH_CONCURRENCY?",
        "afetch: warning: AFETCH_NOTHING_LIKE_IT: no such option",
    ]


def test_an_unknown_config_key_suggests_the_nearest(tmp_path: Path) -> None:
    config = tmp_path / "afetch.toml"
    config.write_text("concurency = 3\n")
    code, _, err = invoke("--config", str(config), "x")
    assert code == 2
    assert (
        err == f"afetch: error: {config}: unknown key 'concurency'; did you mean 'concurrency'?\n"
    )


def test_every_afetch_flag_in_the_readme_mapping_table_exists() -> None:
    """README "Coming from httpx, httprobe or curl": each flag in the afetch column is one of
    the command's options, so the table users copy from cannot drift from the program."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| ProjectDiscovery httpx | httprobe | curl | afetch |", 1)[1]
    rows = [line for line in table.split("\n\n", 1)[0].splitlines()[1:] if line.startswith("|")]
    flags = set()
    for row in rows:
        afetch_column = row.strip("|").split(" | ")[-1]
        for code in re.findall(r"`([^`]+)`", afetch_column):
            flags.update(word for word in code.split() if word.startswith("-"))
    known = {opt for param in afetch.params for opt in param.opts}
    assert len(rows) > 25 and {"-I", "-m", "--retry", "-x", "--resolve", "-v"} <= flags
    assert sorted(flags - known) == []


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_an_input_that_cannot_be_read_is_one_line_and_exit_74() -> None:
    """Reading /proc/self/mem from its start fails with EIO: a local problem, not a bug."""
    done = run_afetch("-l", "/proc/self/mem")
    assert done.returncode == 74, done.stderr
    assert done.stderr == b"afetch: error: cannot read /proc/self/mem: Input/output error\n"


def test_the_flags_curl_users_bring(ok_port: int, hosts: LoopbackHosts) -> None:
    seen: list[bytes] = []
    port = hosts.serve(recording(OK, seen))
    code, out, err = invoke("-I", "-j", "-m", "5", "--retry", "1", "--max-redirs", "3",
                            f"127.0.0.1:{port}")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["method"] == "HEAD" and seen[0].startswith(b"HEAD / HTTP/1.1\r\n")
    code, _, err = invoke("-X", "OPTIONS", "-x", "socks4://127.0.0.1:1", "x")
    assert code == 2 and "only http://, socks5:// and socks5h:// proxies" in err


def test_resolve_verbose_and_proxy_from_the_command_line(hosts: LoopbackHosts) -> None:
    from test_proxy import proxying

    port = hosts.serve(replies(OK))
    at_proxy: list[bytes] = []
    proxy = hosts.serve(proxying(at_proxy))
    url = f"http://pinned.example:{port}/"
    code, out, err = invoke("--resolve", f"pinned.example:{port}:127.0.0.1", "-v",
                            "--format", "line", url)  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"{url} [200 OK] [text/plain] [6] [127.0.0.1] [")
    assert f"{url} * pinned.example pinned to 127.0.0.1\n" in err
    assert f"{url} > Host: pinned.example:{port}\n" in err and f"{url} < HTTP/1.1 200 OK\n" in err
    code, out, err = invoke("--proxy", f"127.0.0.1:{proxy}", "--json", f"127.0.0.1:{port}")
    assert code == 0, err
    assert at_proxy[0].startswith(f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\n".encode())


def test_choices_take_any_case(ok_port: int) -> None:
    code, out, err = invoke("--format", "JSONL", "--scheme", "HTTP", "--backend", "Raw",
                            f"127.0.0.1:{ok_port}")  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert (record["scheme"], record["backend"]) == ("http", "raw")
