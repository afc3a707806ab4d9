"""Log records, partial lines, rotation and following across rotation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.errors import InvalidSpec
from engine.logs import k8s_file


def _rec(n: int, text: str, stream: str = "stdout", tag: str = "F") -> str:
    return f"2026-11-29T18:00:{n:02d}.000000001+00:00 {stream} {tag} {text}\n"


def test_partial_records_join_into_one_line(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(_rec(1, "hel", tag="P") + _rec(1, "oops", stream="stderr") + _rec(2, "lo"))
    lines = list(k8s_file.read_lines(log, 3))
    assert [(ln.stream, ln.text) for ln in lines] == [("stderr", "oops"), ("stdout", "hello")]


def test_tail_and_since(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text("".join(_rec(i, f"l{i}") for i in range(10)))
    assert [ln.text for ln in k8s_file.select_lines(k8s_file.read_lines(log, 3), 2, None)] == ["l8", "l9"]
    since = datetime(2026, 11, 29, 18, 0, 7, tzinfo=UTC)
    assert [ln.text for ln in k8s_file.select_lines(k8s_file.read_lines(log, 3), None, since)] == [
        "l7",
        "l8",
        "l9",
    ]
    assert k8s_file.select_lines(k8s_file.read_lines(log, 3), 0, None) == []


def test_parse_since_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert k8s_file.parse_since("10m", now) == datetime(2026, 1, 1, 11, 50, tzinfo=UTC)
    assert k8s_file.parse_since("2026-01-01T00:00:00Z", now).hour == 0
    with pytest.raises(InvalidSpec, match="since"):
        k8s_file.parse_since("yesterday", now)


def test_rotate_keeps_max_files(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    for i in range(5):
        log.write_text(_rec(i, f"gen{i}"))
        assert k8s_file.rotate(log, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctr.log.1", "ctr.log.2"]
    assert "gen4" in (tmp_path / "ctr.log.1").read_text()
    assert "gen3" in (tmp_path / "ctr.log.2").read_text()


def test_read_lines_spans_rotated_files_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(_rec(1, "old"))
    k8s_file.rotate(log, 3)
    log.write_text(_rec(2, "new"))
    assert [ln.text for ln in k8s_file.read_lines(log, 3)] == ["old", "new"]


def test_follow_survives_rotation_without_loss_or_repeat(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text("")
    done = threading.Event()

    def writer() -> None:
        f = open(log, "a")  # noqa: SIM115
        for i in range(40):
            f.write(_rec(i % 60, f"n{i}"))
            f.flush()
            if i == 20:
                k8s_file.rotate(log, 3)  # the writer keeps its old fd for a moment, like conmon
                f.write(_rec(0, "n20b"))
                f.flush()
                f.close()
                f = open(log, "a")  # noqa: SIM115 - "reopen" after rotation
            time.sleep(0.002)
        f.close()
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    got = [ln.text for ln in k8s_file.follow(log, 0, done.is_set, poll_interval=0.005)]
    t.join()
    expected = [f"n{i}" for i in range(21)] + ["n20b"] + [f"n{i}" for i in range(21, 40)]
    assert got == expected


def test_unfinished_line_is_flushed_only_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(_rec(1, "done") + _rec(2, "no newline", tag="P"))
    assembler = k8s_file.LineAssembler()
    assert [ln.text for ln in k8s_file.read_lines(log, 3, assembler=assembler)] == ["done"]
    (flushed,) = assembler.flush()
    assert (flushed.stream, flushed.text, flushed.time) == (
        "stdout",
        "no newline",
        "2026-11-29T18:00:02.000000001+00:00",
    )
    assert assembler.flush() == []


def test_follow_joins_a_line_split_at_its_start_offset(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(_rec(1, "hel", tag="P"))
    start = log.stat().st_size
    assembler = k8s_file.LineAssembler()
    assert list(k8s_file.read_lines(log, 3, current_limit=start, assembler=assembler)) == []
    with log.open("a") as f:
        f.write(_rec(2, "lo") + _rec(3, "tail", tag="P"))
    followed = k8s_file.follow(log, start, lambda: True, poll_interval=0.01, assembler=assembler)
    assert [ln.text for ln in followed] == ["hello", "tail"]


def test_follow_ends_as_soon_as_its_sleep_is_woken_by_the_exit(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_text(_rec(1, "last words"))
    exited = threading.Event()
    woken = threading.Condition()
    naps: list[bool] = []  # whether each nap was woken (False: it slept its whole time)

    def exit_now() -> None:  # the monitor exits; the watcher notifies (once the nap waits)
        exited.set()
        with woken:
            woken.notify_all()

    def nap(seconds: float) -> None:  # as Lifecycle.nap: returns early when notified
        assert seconds == 600.0
        with woken:
            threading.Thread(target=exit_now).start()
            naps.append(woken.wait(seconds))

    got = [ln.text for ln in k8s_file.follow(log, 0, exited.is_set, poll_interval=600.0, sleep=nap)]
    assert got == ["last words"]
    assert naps == [True]  # one nap, ended by the exit's notification


def test_a_record_the_writer_is_midway_through_is_handed_to_the_follower_whole(tmp_path: Path) -> None:
    """A reader starting while conmon is midway through a record (its first half written, the
    rest not yet) reads only whole records and the follower takes over where they end: the line
    comes out once and whole (the first half passed for a whole record, and the rest was lost)."""
    log = tmp_path / "ctr.log"
    whole, split = _rec(1, "first"), _rec(2, "Status: install ok installed")
    cut = split.index("Sta") + 3
    log.write_text(whole + split[:cut])  # "...stdout F Sta": the writer is midway through it
    offset = k8s_file.complete_size(log)
    assert offset == len(whole.encode())
    assert [ln.text for ln in k8s_file.read_lines(log, 3)] == ["first"]  # not "Sta"
    assembler = k8s_file.LineAssembler()
    first = [ln.text for ln in k8s_file.read_lines(log, 3, offset, assembler)]
    with log.open("a") as f:
        f.write(split[cut:])  # the writer finishes the record
    followed = [ln.text for ln in k8s_file.follow(log, offset, lambda: True, assembler=assembler)]
    assert first + followed == ["first", "Status: install ok installed"]
    assert [ln.text for ln in k8s_file.read_lines(log, 3)] == ["first", "Status: install ok installed"]
    assert k8s_file.complete_size(tmp_path / "gone.log") == 0
    (tmp_path / "none.log").write_text("no newline yet")
    assert k8s_file.complete_size(tmp_path / "none.log") == 0


def test_count_lines_and_skip_to_agree_with_feeding_every_record() -> None:
    """A flood's lines are counted in C and the assembler skips to a cut: what feeding each gives."""
    data = (
        _rec(1, "a")
        + _rec(1, "x stdout F y", stream="stderr")  # a stream name inside a line
        + _rec(1, "hel", tag="P")
        + "junk without a header\n"
        + _rec(2, "part", stream="stderr", tag="P")
        + _rec(2, "lo")
        + _rec(3, "more", stream="stderr", tag="P")
        + _rec(3, "tail")
    ).encode()
    assert k8s_file.count_lines(data) == 4
    cut = data.index(_rec(3, "more", stream="stderr", tag="P").encode())
    assert k8s_file.count_lines(data, cut) == 1
    fed, skipped = k8s_file.LineAssembler(), k8s_file.LineAssembler()
    for raw in data[:cut].split(b"\n")[:-1]:
        fed.feed(raw)
    assert skipped.skip_to(data, cut)
    rest = data[cut:].split(b"\n")[:-1]
    assert [skipped.feed(r) for r in rest] == [fed.feed(r) for r in rest]
    unfinished = fed.flush()
    assert skipped.flush() == unfinished and [line.text for line in unfinished] == ["partmore"]
    at_cut = k8s_file.LineAssembler()  # the stderr line begun before the cut is carried over
    assert at_cut.skip_to(data, cut) and [line.text for line in at_cut.flush()] == ["part"]


def _replace_as_conmon_does(log: Path, text: str) -> None:
    """conmon at its size cap: a new file renamed over the log (the old one keeps no name)."""
    fresh = log.with_name(log.name + ".tmp")
    fresh.write_text(text)
    fresh.rename(log)


def test_follow_goes_on_into_the_file_conmon_put_in_place_of_the_one_it_read(tmp_path: Path) -> None:
    # conmon stamps every line of one read of the container's output with one time, and may
    # reach its cap midway: the new file begins with the time of the last line read before.
    log = tmp_path / "ctr.log"
    log.with_name("ctr.log.1").write_text(_rec(1, "old a") + _rec(2, "old b"))  # read before: not again
    log.write_text(_rec(3, "a") + _rec(5, "b") + _rec(5, "c"))
    steps = iter(
        [
            lambda: _replace_as_conmon_does(log, _rec(5, "d") + _rec(5, "e") + _rec(6, "f")),
            lambda: log.open("a").write(_rec(7, "g")),
            lambda: _replace_as_conmon_does(log, _rec(7, "h")),  # the cap again, at once
        ]
    )
    done = threading.Event()

    def sleep(_seconds: float) -> None:
        step = next(steps, None)
        if step is None:
            done.set()
        else:
            step()

    got = [ln.text for ln in k8s_file.follow(log, 0, done.is_set, sleep=sleep)]
    assert got == ["a", "b", "c", "d", "e", "f", "g", "h"]


class FakeConmon:
    """conmon's k8s-file writer as it behaves: it counts the bytes it wrote since it last replaced
    the file itself (a requested reopen does not reset that), and at ``cap`` opens ``log.tmp``
    (O_CREAT|O_TRUNC) and renames it over the log; a reopen does the same."""

    def __init__(self, log: Path, cap: int) -> None:
        self.log, self.cap, self.written, self.n = log, cap, 0, 0
        self.f = open(log, "ab")  # noqa: SIM115 - closed by close()

    def _replace(self) -> None:
        self.f.close()
        tmp = self.log.with_name(self.log.name + ".tmp")
        self.f = open(tmp, "wb")  # noqa: SIM115 - O_CREAT|O_TRUNC, as conmon
        tmp.rename(self.log)

    def write_line(self) -> None:
        record = _rec(self.n % 60, f"n{self.n}").encode()
        if self.written + len(record) > self.cap:
            self._replace()
            self.written = 0
        self.f.write(record)
        self.f.flush()
        self.written += len(record)
        self.n += 1

    def reopen(self) -> None:
        self._replace()

    def close(self) -> None:
        self.f.close()


def _rotate_logs(log: Path, conmon: FakeConmon, max_size: int, max_files: int) -> None:
    """What ContainerManager.rotate_logs does for one container."""
    k8s_file.promote_held(log, max_files)
    k8s_file.hold(log)
    if log.stat().st_size >= max_size and k8s_file.rotate(log, max_files):
        conmon.reopen()
    k8s_file.hold(log)


@pytest.mark.parametrize("seed", range(8))
def test_no_line_conmon_wrote_is_lost_between_rotations_and_its_cap(tmp_path: Path, seed: int) -> None:
    import random

    rng = random.Random(seed)
    log, max_size, max_files = tmp_path / "ctr.log", 600, 3
    conmon = FakeConmon(log, cap=max_size * (max_files + 1))
    k8s_file.hold(log)  # as create does
    for _ in range(250):
        for _ in range(rng.randint(0, 25)):  # up to ~1.4 files: the cap is met between rotations
            conmon.write_line()
        _rotate_logs(log, conmon, max_size, max_files)
        texts = [ln.text for ln in k8s_file.read_lines(log, max_files)]
        first = int(texts[0][1:]) if texts else conmon.n
        assert texts == [f"n{i}" for i in range(first, conmon.n)]  # the newest lines, none missing
    conmon.close()
    names = {p.name for p in tmp_path.iterdir()}
    assert names <= {"ctr.log", "ctr.log.tmp", "ctr.log.0", "ctr.log.next"} | {
        f"ctr.log.{i}" for i in range(1, max_files)
    }
