from __future__ import annotations

import pytest

from fetcher import demo


def test_demo_runs_offline_and_shows_seed_style_lines(capfd: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0
    out = capfd.readouterr().out
    assert " header > HTTP/1.1 200 OK" in out
    assert " header > HTTP/1.1 301 Moved Permanently" in out
    assert "error > timeout: no response headers within 2 s" in out
    assert "error > connection-refused" in out
    assert "not a host error > invalid-input" in out
    assert '"status_code":200' in out  # the JSON Lines pass
