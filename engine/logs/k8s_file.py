"""Container log files in conmon's k8s-file format, their rotation and following.

Each record is ``<RFC3339Nano time> <stdout|stderr> <F|P> <text>``; ``P``
marks a partial line continued by the next record of the same stream.
Rotated files are ``<log>.1`` (newest) to ``<log>.<max_files-1>`` (oldest).
``<log>.0`` and ``<log>.next`` are second names (:func:`hold`): of the current file, of the
prepared ``<log>.tmp`` conmon opens next, or of a file conmon replaced at its cap until
:func:`promote_held` rotates it in.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from engine.errors import InvalidSpec

_RECORD = re.compile(rb"^(\S+) (stdout|stderr) ([FP]) ?(.*)$")
# a record's header, matched at its first byte (its text follows the match); what _RECORD reads
HEAD = re.compile(rb"(\S+) (stdout|stderr) ([FP]) ?")
# a newline followed by a whole (F) record: each completes one line
_WHOLE_AFTER = re.compile(rb"\n(?=\S+ (?:stdout|stderr) F)")
READ_BYTES = 65536


@dataclass(frozen=True)
class LogLine:
    """One line of container output."""

    time: str
    stream: str
    text: str

    def timestamp(self) -> datetime:
        return parse_time(self.time)


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 time with up to nanosecond precision."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", value)
    if not m:
        raise InvalidSpec(f"invalid time {value!r}: expected RFC 3339, e.g. 2026-01-02T03:04:05Z")
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = m.group(3) or "Z"
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{'+00:00' if tz == 'Z' else tz}")


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`--since` as Docker takes it: RFC 3339, a Unix time, or a duration like 10m, 2h, 30s."""
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", value)
    if m:
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - timedelta(seconds=float(m.group(1)) * scale)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        return parse_time(value)
    except InvalidSpec:
        raise InvalidSpec(
            f"invalid --since {value!r}: use a time like 2026-01-02T03:04:05Z, "
            "a Unix time, or a duration like 10m"
        ) from None


class LineAssembler:
    """Joins partial (P) records into whole lines, per stream."""

    def __init__(self) -> None:
        self._partial: dict[str, list[bytes]] = {}
        self._partial_stamp: dict[str, str] = {}

    def feed(self, raw: bytes) -> LogLine | None:
        m = _RECORD.match(raw.rstrip(b"\n"))
        if not m:
            return None
        stamp, stream_b, tag, text = m.groups()
        stream = stream_b.decode()
        parts = self._partial.get(stream)
        if tag == b"P":
            self._partial.setdefault(stream, []).append(text)
            self._partial_stamp[stream] = stamp.decode()
            return None
        if parts:
            parts.append(text)
            text = b"".join(parts)
            self._partial[stream] = []
        return LogLine(stamp.decode(), stream, text.decode(errors="replace"))

    def skip_to(self, data: bytes, cut: int, limit: int = 4096) -> bool:
        """Take the state reading every record of ``data[:cut]`` would leave (``cut``: where a record
        begins) without reading them: each stream's partial (P) records after its last whole one,
        found from ``cut`` backwards. False, with nothing changed, when a stream needs more than
        ``limit`` records looked at (a caller then feeds the records)."""
        found: dict[str, tuple[list[bytes], str | None]] = {}
        for name in ("stdout", "stderr"):
            texts: list[bytes] = []
            stamp: str | None = None
            whole = False
            for count, (m, end) in enumerate(headers_back(data, cut, name.encode())):
                if count >= limit:
                    return False
                if m.group(3) == b"F":
                    whole = True
                    break
                texts.append(data[m.end() : end])
                stamp = stamp or m.group(1).decode()
            texts.reverse()
            if not whole:  # the partial line may have begun before ``data``
                texts = [*self._partial.get(name, []), *texts]
                stamp = stamp or self._partial_stamp.get(name)
            found[name] = (texts, stamp)
        for name, (texts, stamp) in found.items():
            self._partial[name] = texts
            if stamp is not None:
                self._partial_stamp[name] = stamp
        return True

    def flush(self) -> list[LogLine]:
        """The unfinished lines (output without a final newline), oldest first; forgets them."""
        lines = [
            LogLine(self._partial_stamp[stream], stream, b"".join(parts).decode(errors="replace"))
            for stream, parts in self._partial.items()
            if parts
        ]
        self._partial.clear()
        self._partial_stamp.clear()
        return sorted(lines, key=lambda line: line.time)


def count_lines(data: bytes, start: int = 0) -> int:
    """How many lines the records of ``data[start:]`` complete (its whole, F, records; ``start``
    where a record begins, ``data`` ending after one): counted in C, nothing decoded."""
    if start >= len(data):
        return 0
    m = HEAD.match(data, start)
    return int(m is not None and m.group(3) == b"F") + len(_WHOLE_AFTER.findall(data, start))


def headers_back(data: bytes, end: int, stream: bytes | None = None) -> Iterator[tuple[re.Match[bytes], int]]:
    """The headers of the records in ``data[:end]`` (``end`` where a record begins), newest first,
    each with where its record's text ends; only ``stream``'s when given (found with ``rfind``,
    so records of the other stream are stepped over in C)."""
    if stream is None:
        while end > 0:
            start = data.rfind(b"\n", 0, end - 1) + 1
            m = HEAD.match(data, start, end - 1)
            if m is not None:
                yield m, end - 1
            end = start
        return
    needle = b" " + stream + b" "
    while True:
        at = data.rfind(needle, 0, end)
        if at < 0:
            return
        start = data.rfind(b"\n", 0, at) + 1
        m = HEAD.match(data, start)
        if m is not None and m.start(2) == at + 1:
            yield m, data.index(b"\n", at)
            end = start
        else:  # the stream's name inside a record's text: look before it
            end = at + len(needle) - 1


def log_files(log: Path, max_files: int) -> list[Path]:
    """Existing log files of a container, oldest first: the rotated ones (``log.N`` .. ``log.1``),
    those conmon replaced at its size cap since the last rotation, which their second names still
    hold (:func:`hold`), then ``log``."""
    rotated = [log.with_name(f"{log.name}.{i}") for i in range(max(max_files, 1) + 5, 0, -1)]
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for path in [*rotated, *_replaced(log), log]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if (st.st_ino, st.st_dev) not in seen:  # a file met under a second name mid-rotation: once
            seen.add((st.st_ino, st.st_dev))
            found.append(path)
    return found


# conmon writes ``log`` and, at its cap, opens ``log.tmp`` (O_CREAT|O_TRUNC, never O_EXCL) and
# renames it over ``log``; so a file made there beforehand, with a second name, is its next one.
_HELD = ".0"  # the second name of the current file (or of one conmon replaced since)
_NEXT = ".next"  # the second name of the prepared ``log.tmp`` (or of the file it became)
_PREPARED = ".tmp"  # conmon's own name for the file it opens next


def _named(log: Path, suffix: str) -> Path:
    return log.with_name(log.name + suffix)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    return (sa.st_ino, sa.st_dev) == (sb.st_ino, sb.st_dev)


def _replaced(log: Path) -> list[Path]:
    """The files conmon replaced since the last rotation, oldest first: second names that are no
    longer ``log`` (nor, for the prepared file's, the unused ``log.tmp``)."""
    held, upcoming, prepared = _named(log, _HELD), _named(log, _NEXT), _named(log, _PREPARED)
    found = [held] if held.exists() and not _same_file(held, log) else []
    if upcoming.exists() and not _same_file(upcoming, log) and not _same_file(upcoming, prepared):
        found.append(upcoming)
    return found


def _link(target: Path, name: Path) -> bool:
    """Give ``target`` the (new or replaced) name ``name``; False if ``target`` is gone."""
    linking = name.with_name(name.name + ".link")
    with contextlib.suppress(FileNotFoundError):
        linking.unlink()
    try:
        os.link(target, linking)
    except FileNotFoundError:
        return False
    os.rename(linking, name)
    return True


def hold(log: Path) -> None:
    """Keep every file conmon writes under a second name from its first byte.

    conmon counts what it wrote since it last replaced the file itself, across the reopens a
    rotation asks for, and at its cap (``--log-size-max``) renames a new file over ``log``: the
    file it replaced would be gone with its lines. So the current file is also ``log.0``, and
    conmon's next one is made beforehand (``log.tmp``, also ``log.next``). Call
    :func:`promote_held` first: what conmon replaced is rotated in there.
    """
    if _replaced(log):
        return  # promote_held has not rotated them in yet
    held, upcoming, prepared = _named(log, _HELD), _named(log, _NEXT), _named(log, _PREPARED)
    if _same_file(upcoming, log):  # conmon took the prepared file
        os.rename(upcoming, held)
    elif not _same_file(held, log):
        _link(log, held)
    if not prepared.exists():
        with contextlib.suppress(FileExistsError):  # conmon's own, made meanwhile: it takes that
            os.close(os.open(prepared, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            _link(prepared, upcoming)


def promote_held(log: Path, max_files: int) -> bool:
    """Rotate in, as ``log.1`` (older ones shifting up, the oldest beyond ``max_files`` dropped),
    the files conmon replaced at its cap since the last rotation; whether there were any."""
    replaced = _replaced(log)
    for path in replaced:
        _shift(log, max_files, path)
    return bool(replaced)


def read_lines(
    log: Path, max_files: int, current_limit: int | None = None, assembler: LineAssembler | None = None
) -> Iterator[LogLine]:
    """Every whole line in the container's log files, oldest first.

    ``current_limit`` stops reading the current (unrotated) file at that byte
    offset, so a follower can start exactly where this left off; pass the same
    ``assembler`` to :func:`follow` so a line split across that offset is joined.
    """
    assembler = assembler if assembler is not None else LineAssembler()
    for path in log_files(log, max_files):
        with open(path, "rb") as f:
            data = f.read(current_limit) if path == log and current_limit is not None else f.read()
        # only whole records: what follows the last newline is one the writer is midway through
        # (fed here, its first half would pass for a whole record and the rest be lost)
        for raw in data.split(b"\n")[:-1]:
            line = assembler.feed(raw) if raw else None
            if line is not None:
                yield line


def complete_size(path: Path) -> int:
    """The length of ``path`` up to and including its last newline, where its whole records end
    (the writer may be midway through the next one): where a reader hands over to :func:`follow`.
    0 when it has none or does not exist."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    with f:
        pos = os.fstat(f.fileno()).st_size
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            found = f.read(pos - start).rfind(b"\n")
            if found >= 0:
                return start + found + 1
            pos = start
    return 0


def select_lines(lines: Iterator[LogLine], tail: int | None, since: datetime | None) -> list[LogLine]:
    """Lines at or after ``since``, then only the last ``tail`` of them."""
    if since is not None:
        lines = (ln for ln in lines if ln.timestamp() >= since)
    if tail is None or tail < 0:
        return list(lines)
    return list(deque(lines, maxlen=tail)) if tail else []


def follow(
    log: Path,
    start_offset: int,
    is_done: Callable[[], bool],
    poll_interval: float = 0.05,
    max_files: int = 3,
    assembler: LineAssembler | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[LogLine]:
    """Lines appended to ``log`` from ``start_offset`` on, across rotations, until ``is_done()``
    (:func:`follow_blocks`, read line by line). Output left without a final newline when the
    writer is done is yielded last."""
    assembler = assembler if assembler is not None else LineAssembler()
    newest = [""]  # the time of the last line yielded
    for block in follow_blocks(
        log, start_offset, is_done, poll_interval, max_files, sleep, last_time=lambda: newest[0]
    ):
        for raw in block.split(b"\n")[:-1]:
            line = assembler.feed(raw)
            if line is not None:
                newest[0] = line.time
                yield line
    yield from assembler.flush()


def follow_blocks(
    log: Path,
    start_offset: int,
    is_done: Callable[[], bool],
    poll_interval: float = 0.05,
    max_files: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    last_time: Callable[[], str] = lambda: "",
    read_bytes: int = READ_BYTES,
) -> Iterator[bytes]:
    """What is appended to ``log`` from ``start_offset`` on, across rotations, until ``is_done()``,
    as blocks of whole records (each block ends with a newline; at most about ``read_bytes``
    more than a record the writer was midway through). ``last_time``: the time of the newest
    whole line the caller read (to find its place again if its file was dropped).

    Between empty reads it calls ``sleep(poll_interval)``: one that returns early when the
    writer may be done (a condition notified at the exit) ends the follow sooner.

    When the file is renamed away (rotation), the rest of the old file is read
    and then its successor (the next newer file, found by inode), so no record
    is lost or repeated even when several rotations happen between two reads.
    So is a file conmon replaced at its size cap (renamed over: the one being
    read has no name left), whose successor may begin inside the same read of
    the container's output, with the same time as the last line read.
    """
    f = _open_at(log, start_offset)
    pending = b""
    try:
        while True:
            chunk = f.read(read_bytes) if f else b""
            if chunk:
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if cut:
                    block, pending = pending[:cut], pending[cut:]
                    yield block
                continue
            if f is None or _rotated(f.fileno(), log):
                successor = _open_at(log, 0) if f is None else _successor(log, max_files, f, last_time())
                if successor is not None:
                    if f is not None:
                        f.close()
                    f = successor
                    continue
            # Checked after an empty read: whatever the monitor wrote before it
            # exited has been read by the time we stop.
            if is_done() and not (f is not None and _has_more(f)):
                return
            sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


def _has_more(f: BinaryIO) -> bool:
    return os.fstat(f.fileno()).st_size > f.tell()


def _successor(log: Path, max_files: int, current: BinaryIO, last_time: str) -> BinaryIO | None:
    """The file written after ``current`` once ``current`` was rotated away (None: not yet)."""
    own = os.fstat(current.fileno())
    files = log_files(log, max_files)
    for i, path in enumerate(files):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev):
            return _open_at(files[i + 1], 0) if i + 1 < len(files) else None
    # Our file has no name left: dropped as the oldest, or replaced by conmon at its size cap,
    # when its successor may begin inside the same read of the output, stamped with the time of
    # the last line read (so not "newer than" it: that file would be passed over, and with it
    # every line until the next rotation). The oldest file whose lines are not older than that.
    # (Inode numbers cannot tell the files read before: a closed one's may be reused at once.)
    for path in files:
        first = _first_time(path)
        if first is None or first >= last_time:
            return _open_at(path, 0)
    return None


def _first_time(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            m = _RECORD.match(f.readline())
    except FileNotFoundError:
        return None
    return m.group(1).decode() if m else None


def _open_at(path: Path, offset: int) -> BinaryIO | None:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by follow()
    except FileNotFoundError:
        return None
    f.seek(offset)
    return f


def _rotated(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) != (own.st_ino, own.st_dev)


def rotate(log: Path, max_files: int) -> bool:
    """Shift ``log`` to ``log.1`` (and older files up), dropping the oldest beyond ``max_files``.

    Returns whether anything was rotated; the writer must reopen ``log`` afterwards.
    """
    if not log.exists() or max_files < 1:
        return False
    for alias in (_named(log, _HELD), _named(log, _NEXT)):
        if _same_file(alias, log):
            alias.unlink()  # before the rename: readers never see the file under two rotated names
    _shift(log, max_files, log)
    return True


def _shift(log: Path, max_files: int, newest: Path) -> None:
    """Make ``newest`` (``log`` or the held file) ``log.1``, older files shifting up, the oldest
    beyond ``max_files - 1`` rotated files dropped (``newest`` too when none is kept)."""
    keep = max_files - 1
    if keep < 1:
        newest.unlink()
        return
    oldest = log.with_name(f"{log.name}.{keep}")
    if oldest.exists():
        oldest.unlink()
    for i in range(keep - 1, 0, -1):
        src = log.with_name(f"{log.name}.{i}")
        if src.exists():
            os.rename(src, log.with_name(f"{log.name}.{i + 1}"))
    os.rename(newest, log.with_name(f"{log.name}.1"))
