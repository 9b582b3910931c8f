"""--resume: the torn line cut off an -o file, and the records that mark targets done."""

from __future__ import annotations

from pathlib import Path

from fetcher.resume import Recorded, repair


def test_repair_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    assert repair(str(path)) == 0  # no file yet
    path.write_bytes(b'{"input": "a"}\n{"input": "a"}\nnot json\n{"inp')
    assert repair(str(path)) == 5
    assert path.read_bytes().endswith(b"not json\n")
    assert len(Recorded.load(str(path))) == 2
    path.write_bytes(b"x" * 100_000)  # one torn line and nothing else
    assert repair(str(path)) == 100_000 and path.read_bytes() == b""


def test_each_record_marks_one_target_done_once(tmp_path: Path) -> None:
    """A line given twice but recorded once is fetched once more; records of other programs
    or torn JSON mark nothing."""
    path = tmp_path / "out.jsonl"
    path.write_text(
        '{"input": "a.example", "port": 80}\n'
        '{"input": "b.example", "port": 80}\n'
        '{"input": "b.example", "port": 443}\n'
        "not json\n"
        '{"no_input": 1}\n'
    )
    recorded = Recorded.load(str(path), by_port=True)
    assert len(recorded) == 3
    assert recorded.take("a.example") and not recorded.take("a.example")
    assert recorded.take("b.example", 443) and not recorded.take("b.example", 443)
    assert recorded.take("b.example", 80)
    assert not recorded.take("c.example")
    assert recorded.skipped == 3


def test_a_missing_file_has_nothing_recorded(tmp_path: Path) -> None:
    assert len(Recorded.load(str(tmp_path / "none.jsonl"))) == 0
