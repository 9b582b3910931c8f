"""One run's ending: the exit status, the interrupt summary and the --resume line on stderr."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_interrupts import COUNT, Gate, finish, records, start, targets, wait_for_records

from fetcher import runner
from fetcher.config import Config
from fetcher.loopback import LoopbackHosts
from fetcher.output import Format, OutputError, RecordWriter, format_jsonl
from fetcher.status import ExitCode


def test_an_output_error_has_its_own_exit_status_whatever_else_happened() -> None:
    outcome = runner.Outcome(signal=signal.SIGINT, output_error=OutputError("stdout", "EIO"))
    outcome.tally.failed = 1
    assert runner.exit_code(outcome) == ExitCode.OUTPUT == 74


def test_sigterm_summary_says_what_was_written_and_what_was_left(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In process: three invalid lines (no network), then SIGTERM to ourselves."""

    async def lines() -> AsyncIterator[str]:
        for _ in range(3):
            yield "bad host"
        await asyncio.sleep(0.2)  # let the three records through
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(60)  # cancelled by the handler long before
        yield "never"

    stdout = io.BytesIO()
    writer = RecordWriter(Format(format_jsonl), stdout=stdout)
    outcome = runner.run(Config(), lines(), writer, count=lambda: 10)
    assert runner.exit_code(outcome) == ExitCode.TERMINATED
    assert stdout.getvalue().count(b"\n") == 3
    err = capsys.readouterr().err
    assert err == "afetch: interrupted: 3 records written, 7 targets not fetched\n"


def test_a_write_error_during_the_run_stops_it_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from test_output import FailingStream

    stdout = FailingStream(budget=0)
    writer = RecordWriter(Format(format_jsonl), stdout=stdout, line_buffered=True)  # type: ignore[arg-type]
    outcome = runner.run(Config(), ["bad host"] * 50, writer)
    assert runner.exit_code(outcome) == ExitCode.OUTPUT
    assert writer.written == 1  # no record was taken after the one that failed
    err = capsys.readouterr().err
    assert err == "afetch: error: cannot write to stdout: Input/output error\n"


SUMMARY = re.compile(
    rb"afetch: interrupted: (\d+) records written, (\d+) targets not fetched;"
    rb" run again with --resume to continue\n"
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_run_says_how_to_continue_and_resume_says_what_it_skipped(
    hosts: LoopbackHosts, tmp_path: Path, signum: int
) -> None:
    gate = Gate(hosts, free=20)
    list_file = tmp_path / "hosts.txt"
    list_file.write_text("\n".join(targets(gate.port)) + "\n")
    out = tmp_path / "out.jsonl"
    process = start(list_file, out)
    wait_for_records(out, 20)
    process.send_signal(signum)
    err = finish(process, 30)
    match = SUMMARY.search(err)
    assert match is not None, err
    written, left = int(match[1]), int(match[2])
    assert written == len(records(out)) and written + left == COUNT

    gate.open.set()
    process = start(list_file, out, "--resume")
    err = finish(process, 60)
    assert process.returncode == 0, err
    assert err == f"afetch: resume: {written} targets skipped, already recorded in {out}\n".encode()
    assert len(records(out)) == COUNT


def test_verbose_lines_go_to_stderr_and_the_progress_line_steps_aside(
    hosts: LoopbackHosts, capsys: pytest.CaptureFixture[str]
) -> None:
    from fetcher.config import Output
    from fetcher.loopback import replies, response
    from fetcher.output import Console

    port = hosts.serve(replies(response()))
    stdout = io.BytesIO()
    writer = RecordWriter(Format(format_jsonl), stdout=stdout)
    config = Config(output=Output(verbose=True))
    console = Console(stdin_tty=False, stdout_tty=False, stderr_tty=True)
    outcome = runner.run(config, [f"127.0.0.1:{port}"], writer, console=console)
    assert runner.exit_code(outcome) == ExitCode.OK
    err = capsys.readouterr().err
    url = f"http://127.0.0.1:{port}/"
    assert f"{url} > GET / HTTP/1.1\n" in err and f"{url} < HTTP/1.1 200 OK\n" in err
    assert "\r" not in err  # no progress line drawn over them, though stderr is a terminal
    assert stdout.getvalue().count(b"\n") == 1


def test_an_input_file_gone_before_it_is_counted_costs_only_the_total(
    hosts: LoopbackHosts, capsys: pytest.CaptureFixture[str]
) -> None:
    """The progress line's count runs on a thread of its own; a list file deleted meanwhile
    leaves the line without a total, not a thread's traceback on stderr."""
    from fetcher.loopback import replies, response
    from fetcher.output import Console

    port = hosts.serve(replies(response()))

    def count() -> int:
        raise FileNotFoundError(2, "No such file or directory", "hosts.txt")

    stdout = io.BytesIO()
    console = Console(stdin_tty=False, stdout_tty=False, stderr_tty=True)
    outcome = runner.run(
        Config(), [f"127.0.0.1:{port}"], RecordWriter(Format(format_jsonl), stdout=stdout),
        console=console, count=count,
    )  # fmt: skip
    assert runner.exit_code(outcome) == ExitCode.OK and outcome.total is None
    assert "Traceback" not in capsys.readouterr().err
    assert stdout.getvalue().count(b"\n") == 1
