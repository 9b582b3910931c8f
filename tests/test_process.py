"""fetcher.process: the signals taken over before anything else, moment by moment."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from fetcher.process import Signals


def test_signal_handling_by_moment() -> None:
    exits: list[int] = []
    before = Signals(exit_now=exits.append)
    before.handle(signal.SIGTERM, None)
    assert exits == [143]  # before a run: at once, nothing to save

    during = Signals(exit_now=exits.append)
    stops: list[int] = []
    during.run_begun, during.stop = True, stops.append
    during.handle(signal.SIGINT, None)
    assert (stops, exits, during.received) == ([signal.SIGINT], [143], signal.SIGINT)
    during.handle(signal.SIGTERM, None)
    assert exits == [143, 130]  # the second: at once, with the status of the first

    after = Signals(exit_now=exits.append)
    after.run_begun = True  # the loop has ended: noted, for the status at the end
    after.handle(signal.SIGTERM, None)
    assert (exits, after.received) == ([143, 130], signal.SIGTERM)


def test_handlers_are_taken_over_only_where_nobody_chose_one() -> None:
    signals = Signals(exit_now=lambda status: None)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup: stays ignored
    try:
        replaced = signals.install()
        assert set(replaced) == {signal.SIGTERM}
        assert signal.getsignal(signal.SIGTERM) == signals.handle
        assert signals.install() == {}  # already ours
        signals.ignore()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signals.restore(replaced)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)
    elsewhere: list[dict[int, object]] = []
    thread = threading.Thread(target=lambda: elsewhere.append(Signals().install()))
    thread.start()
    thread.join(timeout=10)
    assert elsewhere == [{}]  # not the main thread: signal handlers cannot be set there


def test_an_in_process_run_restores_the_handlers_it_found() -> None:
    from click.testing import CliRunner

    from fetcher.cli import afetch

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(afetch, ["--json", "bad host"])
    assert result.exit_code == 1
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_process_main_exits_with_the_command_status_and_ignores_signals_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fetcher import process

    monkeypatch.setattr(process, "SIGNALS", Signals(exit_now=lambda status: None))
    monkeypatch.setattr(sys, "argv", ["afetch", "--version"])
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            process.main()
        assert exited.value.code == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        process.SIGNALS.received = signal.SIGINT  # as if Ctrl-C came during the exit
        with pytest.raises(SystemExit) as exited:
            process.main()
        assert exited.value.code == 130
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def test_console_script_and_dash_m_start_in_fetcher_process() -> None:
    import tomllib

    root = Path(__file__).resolve().parent.parent
    with open(root / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    assert scripts == {"afetch": "fetcher.process:main"}
    assert "from .process import main" in (root / "fetcher" / "__main__.py").read_text()
