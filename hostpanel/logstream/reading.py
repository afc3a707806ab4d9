"""Reading a container's log files with cursors: where to start following, and backfill.

Plain functions over paths (no Django), used by the follower in the host agent.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.logs.k8s_file import HEAD, LineAssembler, count_lines, headers_back, read_lines
from hostpanel.logstream.cursors import CursorCounter, sort_key, with_cursors

# Lines stamped with one time come from one chunk conmon read (at most 8 KiB of
# output, so at most ~4,096 records): a window this big holds the whole last chunk.
TAIL_WINDOW = 1024 * 1024
MAX_BACKFILL_LINES = 5000


_WHOLE_HEAD = re.compile(rb"(?<=\n)(\S+) (?:stdout|stderr) F")
WALK_LIMIT = 4096  # records looked at backwards from a skimmer's cut before it reads them all


@dataclass
class Skimmer:
    """Lines with cursors from blocks of whole records, in file order, reading only the newest
    ones wanted: a flood's other lines are counted in C and never decoded. The cursors and texts
    are those reading every record gives (:func:`backfill` reads the same files), because the
    state at the cut (each stream's partial line, the cursor counter) is taken from the few
    records just before it."""

    assembler: LineAssembler = field(default_factory=LineAssembler)
    counter: CursorCounter = field(default_factory=CursorCounter)

    def feed(self, block: bytes, keep: int) -> tuple[list[dict[str, str]], int]:
        """The newest lines ``block`` completes (at most ``keep``), and how many others it completes."""
        total = count_lines(block)
        if total <= keep:
            return self._read(block, 0), 0
        cut = _cut(block, keep, total)
        if cut <= 0 or not self._skip_to(block, cut):
            cut = 0
        lines = self._read(block, cut)
        kept = lines[max(0, len(lines) - keep) :] if keep else []
        return kept, total - len(kept)

    def _read(self, block: bytes, start: int) -> list[dict[str, str]]:
        fed = (self.assembler.feed(raw) for raw in block[start:].split(b"\n")[:-1])
        return list(with_cursors((line for line in fed if line is not None), self.counter))

    def _skip_to(self, block: bytes, cut: int) -> bool:
        """Take the state reading ``block[:cut]`` would leave; False (nothing changed) when finding
        it takes more than WALK_LIMIT records."""
        after = _first_whole_time(block, cut)
        run_time, run = "", 0
        reached_start = True
        for count, (m, _end) in enumerate(headers_back(block, cut)):
            if count >= WALK_LIMIT:
                return False
            if m.group(3) != b"F":
                continue
            stamp = m.group(1).decode()
            if not run_time:
                run_time, run = stamp, 1
                if after is not None and after != stamp:
                    reached_start = False  # the next whole line starts a count of its own
                    break
            elif stamp == run_time:
                run += 1
            else:
                reached_start = False
                break
        if not self.assembler.skip_to(block, cut, WALK_LIMIT):
            return False
        if not run_time:
            return True  # no whole line before the cut: the counter stands
        if reached_start and self.counter.last_time == run_time:
            self.counter.same += run
        else:
            self.counter.last_time, self.counter.same = run_time, run - 1
        return True


def _cut(block: bytes, keep: int, total: int) -> int:
    """Where to start reading ``block`` (``total`` lines) for about its newest ``keep`` lines: where
    a record begins, preferably the first of a conmon read (a new time), so the cursor counter
    starts afresh there (giving up the rest of the read the estimate fell in)."""
    at = len(block) - (len(block) * keep) // max(total, 1) - 1
    if at <= 0:
        return 0
    cut = block.rfind(b"\n", 0, at) + 1
    m = HEAD.match(block, cut)
    if m is not None:  # after the last record stamped with this one's time (conmon's times rise)
        last = block.rfind(b"\n" + m.group(1) + b" ", max(cut - 1, 0))
        after = block.find(b"\n", max(last + 1, cut)) + 1
        if 0 < after < len(block):
            cut = after
    return cut


def _first_whole_time(block: bytes, start: int) -> str | None:
    """The time of the first whole (F) record in ``block[start:]``, or None."""
    m = HEAD.match(block, start)
    if m is None or m.group(3) != b"F":
        m = _WHOLE_HEAD.search(block, start)
    return m.group(1).decode() if m is not None else None


def follow_start(log: Path) -> tuple[int, CursorCounter]:
    """Where a follower starts: the end of the last whole record, and the cursor state there."""
    try:
        with open(log, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            base = max(0, size - TAIL_WINDOW)
            f.seek(base)
            window = f.read(size - base)
    except FileNotFoundError:
        return 0, CursorCounter()
    end = window.rfind(b"\n") + 1
    records = window[:end].split(b"\n")
    if base > 0 and records:
        records = records[1:]  # the first one is cut by the window
    assembler, counter = LineAssembler(), CursorCounter()
    for raw in records:
        line = assembler.feed(raw) if raw else None
        if line is not None:
            counter.next(line.time)
    return base + end, counter


@dataclass
class Backfill:
    """Lines to send a viewer before live ones, and what it missed."""

    lines: list[dict[str, str]] = field(default_factory=list)
    skipped: int = 0  # lines between the cursor and these that are not sent (too many)
    lost: bool = False  # the cursor's line was rotated away: an unknown number of lines are gone

    def to_message(self) -> dict[str, Any]:
        return {"type": "logs.backfill", "lines": self.lines, "skipped": self.skipped, "lost": self.lost}


def backfill(log: Path, max_files: int, tail: int, after: str | None) -> Backfill:
    """The last ``tail`` lines, or with ``after`` (a cursor) the lines after it (the newest
    MAX_BACKFILL_LINES of them; ``skipped`` counts the rest)."""
    if after is None and tail <= 0:
        return Backfill()
    if after is None:
        quick = _last_lines(log, tail)
        if quick is not None:
            return Backfill(lines=quick)
    lines = with_cursors(read_lines(log, max_files))
    if after is None:
        return Backfill(lines=list(deque(lines, maxlen=tail)))
    after_key = sort_key(after)
    result = Backfill()
    kept: deque[dict[str, str]] = deque(maxlen=MAX_BACKFILL_LINES)
    first = True
    for line in lines:
        key = sort_key(line["cursor"])
        if first:
            first = False
            result.lost = key > after_key  # the oldest line we have is newer than the cursor
        if key <= after_key:
            continue
        if len(kept) == kept.maxlen:
            result.skipped += 1
        kept.append(line)
    result.lines = list(kept)
    return result


def _last_lines(log: Path, tail: int) -> list[dict[str, str]] | None:
    """The last ``tail`` lines read from the end of the current file only (a viewer opening a
    flooding container's log must not parse all of it), or None when that window cannot give
    exactly what reading every file would: too few lines in it, or partial (P) records."""
    try:
        with open(log, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            base = max(0, size - TAIL_WINDOW)
            f.seek(base)
            records = [raw for raw in f.read(size - base).split(b"\n") if raw]
    except FileNotFoundError:
        return None
    if base > 0:
        records = records[1:]  # cut by the window
    # the first chunk's time may have begun before the window (or in the previous file): not counted
    first = records[0].split(b" ", 1)[0] if records else b""
    while records and records[0].split(b" ", 1)[0] == first:
        records.pop(0)
    assembler = LineAssembler()
    lines = [line for raw in records if (line := assembler.feed(raw)) is not None]
    if any(raw.split(b" ", 3)[2:3] == [b"P"] for raw in records):
        return None
    if len(lines) < tail:
        return None  # older files, or what came before the window, hold the rest
    return list(deque(with_cursors(lines), maxlen=tail))
