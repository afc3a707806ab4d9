"""Reading a container's log files with cursors: where to start following, and backfill.

Plain functions over paths (no Django), used by the follower in the host agent.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.logs.k8s_file import LineAssembler, read_lines
from hostpanel.logstream.cursors import CursorCounter, sort_key, with_cursors

# Lines stamped with one time come from one chunk conmon read (at most 8 KiB of
# output, so at most ~4,096 records): a window this big holds the whole last chunk.
TAIL_WINDOW = 1024 * 1024
MAX_BACKFILL_LINES = 5000


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
