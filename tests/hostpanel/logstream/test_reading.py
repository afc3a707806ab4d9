"""Cursors and backfill over real log files (rotation, bounds, lost cursors)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.logs.k8s_file import count_lines, read_lines, rotate
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


def _conmon_like(seed: int, reads: int) -> bytes:
    """Records as conmon writes a flood: each read of the pipe stamped once, its last line cut
    (a P record continued by the next read of that stream), stdout and stderr interleaved, long
    lines in many P records, the occasional stream name inside a line, and a record no reader
    understands."""
    rng = random.Random(seed)
    out, n = [], 0
    for read in range(reads):
        t = stamp(1000 + read).encode()
        stream = b"stderr" if rng.random() < 0.3 else b"stdout"
        for _ in range(rng.choice([0, 1, 3, 40, 200])):
            n += 1
            text = rng.choice([b"flood line %d", b"x stdout F %d", b"%d stderr P y"]) % n if n % 7 else b""
            out.append(t + b" " + stream + b" F " + text + b"\n")
        if rng.random() < 0.6:
            out.append(t + b" " + stream + b" P part" + str(read).encode() + b"-\n")
        if rng.random() < 0.02:
            out.append(b"garbage without a header\n")
    return b"".join(out)


@pytest.mark.parametrize("seed", range(12))
def test_a_skimmer_keeps_the_newest_lines_with_the_cursors_and_texts_a_full_read_gives(
    tmp_path: Path, seed: int
) -> None:
    data = _conmon_like(seed, 400)
    log = tmp_path / "ctr.log"
    log.write_bytes(data)
    every = reading.backfill(log, 3, tail=10**9, after=None).lines  # every record read
    assert every == list(cursors.with_cursors(read_lines(log, 3)))
    rng = random.Random(seed)
    skimmer = reading.Skimmer()
    position, done, skipped_in_all = 0, 0, 0
    while position < len(data):  # blocks of whole records, as follow_blocks yields them
        end = data.find(b"\n", min(len(data) - 1, position + rng.randrange(1, 60_000))) + 1
        block, position = data[position:end], end
        keep = rng.choice([0, 1, 5, 50, 10**6])
        kept, skipped = skimmer.feed(block, keep)
        completed = count_lines(block)
        assert len(kept) + skipped == completed  # every line counted, exactly
        assert len(kept) <= keep
        assert kept == every[done + completed - len(kept) : done + completed]  # the newest, as read
        done += completed
        skipped_in_all += skipped
    assert done == len(every)
    assert skipped_in_all > 0  # the cut was taken, not only full reads


def test_a_skimmer_cut_inside_a_chunk_continues_its_cursor_count(tmp_path: Path) -> None:
    """A cut in the middle of one read's records (no new time to start from): the count goes on."""
    log = tmp_path / "ctr.log"
    append(log, [(1, "stdout", f"l{i}") for i in range(300)])
    data = log.read_bytes()
    half = data.index(b"l150\n") + 5
    skimmer = reading.Skimmer()
    assert len(skimmer.feed(data[:half], 1000)[0]) == 151
    kept, skipped = skimmer.feed(data[half:], 3)
    assert skipped == 146
    assert [x["cursor"] for x in kept] == [f"{stamp(1)}#297", f"{stamp(1)}#298", f"{stamp(1)}#299"]
    assert [x["text"] for x in kept] == ["l297", "l298", "l299"]


def test_a_skimmer_keeps_as_many_lines_as_asked_but_for_part_of_one_read() -> None:
    """The cut starts where a conmon read does (a new time): it may give up the rest of one read."""
    block = b"".join(
        b"".join(stamp(read).encode() + b" stdout F r%d.%d\n" % (read, i) for i in range(10))
        + stamp(read).encode()
        + b" stdout P cut\n"
        for read in range(1000)
    )
    for keep in (95, 500, 4000):
        kept, skipped = reading.Skimmer().feed(block, keep)
        assert keep - 10 <= len(kept) <= keep and len(kept) + skipped == 10_000
        assert kept[-1]["text"] == "r999.9"
        firsts = [x["text"] for x in kept if x["text"].endswith(".0")]
        assert firsts and all(t.startswith("cutr") for t in firsts)  # joined with the read before
