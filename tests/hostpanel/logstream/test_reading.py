"""Cursors and backfill over real log files (rotation, bounds, lost cursors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.logs.k8s_file import rotate
from hostpanel.logstream import cursors, reading
from tests.hostpanel.logstream.logfiles import append, stamp


def test_lines_of_one_chunk_get_ordered_cursors(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    append(log, [(1, "stdout", "a"), (1, "stderr", "b"), (1, "stdout", "c"), (2, "stdout", "d")])
    lines = reading.backfill(log, 3, tail=10, after=None).lines
    assert [x["cursor"] for x in lines] == [
        f"{stamp(1)}#0",
        f"{stamp(1)}#1",
        f"{stamp(1)}#2",
        f"{stamp(2)}#0",
    ]
    assert [x["stream"] for x in lines] == ["stdout", "stderr", "stdout", "stdout"]
    keys = [cursors.sort_key(x["cursor"]) for x in lines]
    assert keys == sorted(keys) and len(set(keys)) == 4


def test_sort_key_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="invalid log cursor"):
        cursors.sort_key("yesterday#1")
    assert cursors.sort_key("12") < cursors.sort_key("13")
    assert not cursors.is_valid("x" * 100)


def test_backfill_after_a_cursor_sends_only_later_lines_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    append(log, [(i, "stdout", f"line {i}") for i in range(5)])
    assert rotate(log, 3)
    append(log, [(i, "stdout", f"line {i}") for i in range(5, 8)])
    after = f"{stamp(3)}#0"
    result = reading.backfill(log, 3, tail=0, after=after)
    assert [x["text"] for x in result.lines] == ["line 4", "line 5", "line 6", "line 7"]
    assert not result.lost and result.skipped == 0


def test_a_cursor_rotated_away_is_reported_lost(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    append(log, [(1, "stdout", "old")])
    rotate(log, 2)
    append(log, [(2, "stdout", "mid")])
    rotate(log, 2)  # keeps one rotated file: "old" is gone
    append(log, [(3, "stdout", "new")])
    result = reading.backfill(log, 2, tail=0, after=f"{stamp(1)}#0")
    assert result.lost
    assert [x["text"] for x in result.lines] == ["mid", "new"]


def test_backfill_is_bounded_and_counts_what_it_left_out(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    total = reading.MAX_BACKFILL_LINES + 123
    append(log, [(i, "stdout", str(i)) for i in range(1, total + 1)])
    result = reading.backfill(log, 3, tail=0, after=f"{stamp(0)}#0")
    assert result.skipped == 123
    assert len(result.lines) == reading.MAX_BACKFILL_LINES
    assert result.lines[-1]["text"] == str(total)


def test_follow_start_continues_the_cursor_of_a_chunk(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    append(log, [(1, "stdout", "a"), (2, "stdout", "b"), (2, "stdout", "c")])
    with log.open("ab") as f:
        f.write(f"{stamp(2)} stdout F half-writ".encode())  # a record being written now
    offset, counter = reading.follow_start(log)
    assert offset == len(log.read_bytes()) - len(f"{stamp(2)} stdout F half-writ")
    assert counter.next(stamp(2)) == f"{stamp(2)}#2"  # the record being written is the 3rd of its chunk


def test_a_tail_from_the_end_of_a_big_file_has_the_cursors_a_full_read_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "ctr.log"
    # chunks of 7 lines sharing a time, so the window's first whole chunk is cut
    append(log, [(i // 7, "stdout", f"line {i}") for i in range(3000)])
    full = reading.backfill(log, 3, tail=200, after=None).lines
    monkeypatch.setattr(reading, "TAIL_WINDOW", 4000)  # about 60 records: less than the tail
    assert reading._last_lines(log, 200) is None
    assert reading.backfill(log, 3, tail=200, after=None).lines == full
    monkeypatch.setattr(reading, "TAIL_WINDOW", 30_000)
    quick = reading._last_lines(log, 200)
    assert quick is not None and quick == full
    assert reading.backfill(log, 3, tail=0, after=None).lines == []
