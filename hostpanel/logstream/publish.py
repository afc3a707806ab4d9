"""Publish log lines to the Channels group of one stream, bounded.

Any producer calls :func:`publish_lines` (sync; :func:`apublish_lines` from async
code), e.g. a build task streaming its output::

    from hostpanel.logstream.publish import publish_lines
    publish_lines("build", str(build.pk), [{"stream": "stdout", "text": "Step 1/4"}])

Viewers connect to ``ws/logs/<kind>/<key>/`` (access.register decides who may). A
container's lines are published by its host's follower on that host's own layer
(``layer.host_layer``), where the viewers of its replicas listen; other kinds on the lines layer.
Lines are dicts ``{"stream", "text"}`` with optional ``"time"`` and ``"cursor"``;
a line without a cursor gets the stream's next sequence number.

Bounds, so a producer writing 500,000 lines a second fills neither Redis nor a tab:
a stream may publish at most ``RATE_LINES`` lines a second (a token bucket with a
one-second burst) and ``MAX_BATCH_LINES`` per message. Over that, the newest lines
are kept and the message says how many were skipped. Each message also carries
``epoch`` (this publisher process) and ``start``/``end`` (how many lines the stream
had produced before and after it, skipped ones included) so a consumer that lost
whole messages (the layer drops them for a full channel) can tell how many lines it missed.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync

from hostpanel.logstream.access import KIND

RATE_LINES = 20_000  # lines per second and stream
MAX_BATCH_LINES = 2000
MAX_TEXT = 16 * 1024  # characters kept of one line
EPOCH = secrets.token_hex(4)
_KEY = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


def group_name(kind: str, key: str) -> str:
    """The Channels group of a stream; ValueError for a kind or key a group name cannot hold."""

    if not KIND.match(kind) or not _KEY.match(key):
        raise ValueError(f"invalid log stream {kind!r}/{key!r}: kind [a-z0-9_], key [A-Za-z0-9_.-]{{1,64}}")
    return f"logs.{kind}.{key}"


@dataclass
class _StreamState:
    produced: int = 0
    tokens: float = float(RATE_LINES)
    refilled: float = field(default_factory=time.monotonic)


_states: dict[str, _StreamState] = {}
_lock = threading.Lock()


def prepare_batch(
    kind: str, key: str, lines: list[dict[str, Any]], now: float | None = None, dropped: int = 0
) -> dict[str, Any]:
    """The group message for ``lines``: bounded, cursors filled in, counters advanced.

    ``dropped`` counts lines the producer already dropped just before these (reported as skipped).
    """
    group = group_name(kind, key)
    now = time.monotonic() if now is None else now
    with _lock:
        state = _states.setdefault(group, _StreamState(refilled=now))
        state.tokens = min(float(RATE_LINES), state.tokens + (now - state.refilled) * RATE_LINES)
        state.refilled = now
        start = state.produced + dropped
        allowed = min(len(lines), MAX_BATCH_LINES, int(state.tokens))
        first = len(lines) - allowed  # only the kept (newest) lines are copied and checked
        kept = [_line(line, start + i + 1) for i, line in enumerate(lines[first:], first)]
        state.tokens -= allowed
        begin, state.produced = state.produced, start + len(lines)
        return {
            "type": "logs.batch",
            "epoch": EPOCH,
            "start": begin,
            "end": state.produced,
            "skipped": dropped + len(lines) - len(kept),
            "lines": kept,
        }


def _line(line: dict[str, Any], number: int) -> dict[str, str]:
    """One line as a batch carries it (a line without a cursor gets its sequence ``number``)."""
    return {
        "cursor": str(line.get("cursor") or number),
        "stream": str(line.get("stream", "stdout")),
        "time": str(line.get("time", "")),
        "text": str(line.get("text", ""))[:MAX_TEXT],
    }


def forget(kind: str, key: str) -> None:
    """Drop a finished stream's counters (a build that ended)."""
    with _lock:
        _states.pop(group_name(kind, key), None)


def publish_lines(kind: str, key: str, lines: list[dict[str, Any]], dropped: int = 0) -> None:
    """Send ``lines`` to the viewers of stream ``kind``/``key`` (bounded; never blocks on viewers)."""
    if not lines and not dropped:
        return
    from hostpanel.logstream.layer import lines_layer

    layer = lines_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(
            group_name(kind, key), prepare_batch(kind, key, lines, dropped=dropped)
        )


async def apublish_lines(
    kind: str, key: str, lines: list[dict[str, Any]], dropped: int = 0, layer: Any = None
) -> None:
    """:func:`publish_lines` for async code; ``layer``: the one to publish on (a host's follower
    publishes on its own, ``layer.host_layer``), else the lines layer."""
    if not lines and not dropped:
        return
    if layer is None:
        from hostpanel.logstream.layer import lines_layer

        layer = lines_layer()
    if layer is not None:
        await layer.group_send(group_name(kind, key), prepare_batch(kind, key, lines, dropped=dropped))
