"""The agent-side follower over real files: cursors agree with backfill, rotation, bounds, leases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from engine.logs.k8s_file import LineAssembler, rotate
from hostpanel.agent import follower
from hostpanel.logstream import publish, reading
from tests.hostpanel.logstream.fakes import FileEngine
from tests.hostpanel.logstream.logfiles import append, stamp


def take_until(watch: follower.Watch, count: int, timeout: float = 10) -> tuple[list[dict[str, str]], int]:
    lines: list[dict[str, str]] = []
    dropped = 0
    deadline = time.monotonic() + timeout
    while len(lines) + dropped < count and time.monotonic() < deadline:
        got, lost = watch.take()
        lines += got
        dropped += lost
        time.sleep(0.02)
    return lines, dropped


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    engine = FileEngine()
    log_follower = follower.LogFollower(engine, "h1")  # type: ignore[arg-type]
    yield engine, log_follower
    log_follower.stop_all()


def test_follower_lines_across_rotation_carry_the_cursors_backfill_gives(tmp_path: Path, agent: Any) -> None:
    engine, log_follower = agent
    log = engine.add_log("acme-web-0", tmp_path)
    append(log, [(1, "stdout", "before")])
    watch = log_follower.watch("7", "acme-web-0")
    assert watch is not None
    append(log, [(2, "stdout", "a"), (2, "stderr", "b")])
    first, _ = take_until(watch, 2)
    rotate(log, 3)
    append(log, [(2, "stdout", "c"), (3, "stdout", "d")])  # same chunk time continues after rotation
    second, dropped = take_until(watch, 2)
    followed = first + second
    assert dropped == 0
    assert [x["text"] for x in followed] == ["a", "b", "c", "d"]
    from_files = reading.backfill(log, 3, tail=100, after=None).lines
    assert from_files[1:] == followed  # same cursors whoever computes them


def test_a_fast_writer_is_bounded_and_counted(tmp_path: Path, agent: Any) -> None:
    engine, log_follower = agent
    log = engine.add_log("acme-web-0", tmp_path)
    watch = log_follower.watch("8", "acme-web-0")
    total = follower.PENDING_LINES * 3
    append(log, [(i, "stdout", str(i)) for i in range(total)])
    lines, dropped = take_until(watch, total)
    assert len(lines) + dropped == total
    assert len(lines) <= total  # never more than written
    assert lines[-1]["text"] == str(total - 1)  # the newest are kept
    message = publish.prepare_batch("container", "8-test", lines, dropped=dropped)
    assert len(message["lines"]) <= publish.MAX_BATCH_LINES
    assert message["skipped"] + len(message["lines"]) == total
    assert message["end"] - message["start"] == total
    assert message["lines"][-1]["text"] == str(total - 1)


def test_leases_expire_and_stop_following(tmp_path: Path, agent: Any) -> None:
    engine, log_follower = agent
    engine.add_log("acme-web-0", tmp_path)
    watch = log_follower.watch("9", "acme-web-0")
    assert log_follower.watch("9", "acme-web-0") is watch  # renewed, not doubled
    log_follower.expire(time.monotonic() + follower.LEASE_SECONDS + 1)
    assert "9" not in log_follower.watches and watch.stop.is_set()
    assert log_follower.watch("10", "no-such-container") is None


def test_publish_assigns_sequence_cursors_and_rejects_bad_keys() -> None:
    message = publish.prepare_batch("build", "b-cursors", [{"stream": "stdout", "text": "x"}] * 3)
    assert [x["cursor"] for x in message["lines"]] == ["1", "2", "3"]
    again = publish.prepare_batch("build", "b-cursors", [{"stream": "stdout", "text": "y"}])
    assert again["lines"][0]["cursor"] == "4" and again["start"] == 3
    with pytest.raises(ValueError, match="invalid log stream"):
        publish.group_name("build", "../etc")


def test_a_flood_past_the_rate_is_counted_not_decoded_and_keeps_backfills_cursors(
    tmp_path: Path, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow thread decodes only the lines the rate lets out (the newest of each block); the
    others are counted exactly, and every line it does take carries the cursor backfill gives."""
    monkeypatch.setattr(publish, "RATE_LINES", 500)
    decoded = []
    feed = LineAssembler.feed
    monkeypatch.setattr(LineAssembler, "feed", lambda self, raw: decoded.append(1) or feed(self, raw))
    engine, log_follower = agent
    log = engine.add_log("acme-web-0", tmp_path)
    watch = log_follower.watch("11", "acme-web-0")
    assert watch is not None
    total, written, read = 60_000, 0, 0
    with log.open("ab") as f:  # as conmon writes a flood: reads of 450 lines, each stamped once, its end cut
        while written < total:
            t, n = stamp(read).encode(), min(450, total - written)
            records = [t + b" stdout F flood %d.%d\n" % (read, i) for i in range(n)]
            written, read = written + n, read + 1
            if written < total:  # the next read's first record completes it
                records.append(t + b" stdout P cut %d, \n" % read)
            f.write(b"".join(records))
            f.flush()
    lines, dropped = take_until(watch, total)
    assert len(lines) + dropped == total  # every line accounted for, exactly
    assert dropped > total // 2 and lines
    assert len(decoded) < total // 2  # most were never decoded
    every = {x["cursor"]: x for x in reading.backfill(log, 3, tail=10**9, after=None).lines}
    assert len(every) == total
    assert all(every[x["cursor"]] == x for x in lines)  # same cursor, same line as backfill
