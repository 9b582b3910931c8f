"""The command line: CliRunner for parsing and exit codes, a real process for pipes."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fetcher import __version__
from fetcher.cli import afetch, config_keys
from fetcher.loopback import LoopbackHosts, replies, response

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
        code, out, _ = invoke("--json", "-o", str(out_file), f"127.0.0.1:{ok_port}")
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
        pytest.param(["-X", "POST", "x"], "--method", id="method"),
        pytest.param(["-H", "no colon", "x"], "Name: value", id="header"),
        pytest.param(["-l", "/no/such/file"], "does not exist", id="missing-list"),
        pytest.param(["--nope"], "No such option", id="unknown-option"),
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
    commented = {"cacert"}  # no default value: shown commented out
    assert set(example) | commented == set(keys)
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
        pytest.param("concurrency = 'lots'\n", "--concurrency", id="bad-value"),
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

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run", broken)
    code, out, err = invoke("x")
    assert code == 70
    assert err == "afetch: internal error: RuntimeError: boom\n"
    monkeypatch.setenv("AFETCH_DEBUG", "1")
    with pytest.raises(RuntimeError):
        invoke("x")
