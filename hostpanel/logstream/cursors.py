"""Cursors: where a log line sits in its stream, so a viewer can resume after it.

A container line's cursor is ``<conmon time>#<n>``: the RFC 3339 nanosecond time
conmon stamped on the record, and ``n``, how many earlier lines carry the same time
(conmon stamps every chunk it reads, so lines of one chunk share a time; chunks
never straddle a rotation). It is the same whoever computes it (the follower or a
reader of the files), survives rotation and agent restarts, and sorts in write order.

Other producers (builds) get ``<n>``: a plain sequence number per stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from engine.logs.k8s_file import LogLine

_TIME_CURSOR = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?#(\d+)$")
_SEQ_CURSOR = re.compile(r"^\d{1,18}$")
MAX_CURSOR_LENGTH = 64


def sort_key(cursor: str) -> tuple[int, int]:
    """A key that orders cursors of one stream in write order; ValueError for a malformed cursor."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("cursor too long")
    if _SEQ_CURSOR.match(cursor):
        return (int(cursor), 0)
    m = _TIME_CURSOR.match(cursor)
    if not m:
        raise ValueError(f"invalid log cursor {cursor!r}: expected <RFC 3339 time>#<n> or a sequence number")
    tz = m.group(3) or "Z"
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz))
    nanos = int((m.group(2) or "0").ljust(9, "0"))
    return (int(base.timestamp()) * 1_000_000_000 + nanos, int(m.group(4)))


def is_valid(cursor: str) -> bool:
    try:
        sort_key(cursor)
    except ValueError:
        return False
    return True


@dataclass
class CursorCounter:
    """Assigns ``<time>#<n>`` cursors to lines read in file order (state: the last time and n)."""

    last_time: str = ""
    same: int = -1

    def next(self, time: str) -> str:
        if time == self.last_time:
            self.same += 1
        else:
            self.last_time, self.same = time, 0
        return f"{time}#{self.same}"


def with_cursors(lines: Iterable[LogLine], counter: CursorCounter | None = None) -> Iterator[dict[str, str]]:
    """Each line as the dict the log stream carries: cursor, stream, time, text."""
    counter = counter or CursorCounter()
    for line in lines:
        yield {"cursor": counter.next(line.time), "stream": line.stream, "time": line.time, "text": line.text}
