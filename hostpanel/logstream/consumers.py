"""The live-log WebSocket: ``ws/logs/<replica_id>/`` and ``ws/logs/<kind>/<key>/``.

Thin, as DESIGN.md asks: authenticate, check access (``access.may_watch``),
join the group ``logs.<kind>.<key>``, forward. A refused viewer (anonymous,
another tenant, unknown stream) is accepted and closed at once with code 4404,
with nothing sent, so the page can stop reconnecting. An open stream re-checks
access (hostpanel/tenants/watch.py) and, once the viewer is removed from the
tenant or the user disabled, sends an error and closes with 4404 within seconds.

Query: ``?after=<cursor>`` resumes after the last line the client has (the
backfill then holds exactly the lines after it); otherwise ``?tail=N`` (default
200) lines come first. Messages to the client (JSON):

- ``{"type": "lines", "lines": [{"cursor", "stream", "time", "text"}, ...]}``
- ``{"type": "skipped", "count": K}``: K lines were not sent (bounds)
- ``{"type": "lost"}``: the resume cursor was rotated away; lines are missing
- ``{"type": "ready"}``: backfill done, live lines follow
- ``{"type": "error", "message": ...}``

A placed container's stream is all on its host's own layer (``layer.host_layer``: Redis
pub/sub under ``hostlogs.<host>.``, which that host's Redis user alone of the hosts may
use): the consumer takes a channel of its own there and joins the replica's group, sends
its leases to the follower's group (``watch.WATCH_GROUP``) with that channel as
``reply_to``, and a task of it receives the backfill and the line batches there. So a
host reaches only the viewers of replicas placed on it. Other kinds' batches travel on
the lines layer (``layer.lines_layer``); where that is not the consumer's own layer, the
same task receives them on a channel of its own there. Redis pub/sub means one PUBLISH
per batch whatever the number of viewers, fanned out in this process. Every handler that
sends lines runs under one lock, so live batches never overtake the backfill.

Bounds per connection: live lines while the backfill is pending are held in a
deque of BUFFER_MESSAGES messages; at most RATE_LINES lines a second are sent
(the newest of each batch), the rest counted as skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from hostpanel.logstream import access, cursors, services
from hostpanel.logstream.layer import host_layer, lines_layer
from hostpanel.logstream.publish import group_name
from hostpanel.logstream.watch import LEASE_RENEW, WATCH_GROUP
from hostpanel.tenants.watch import AccessGuard

REFUSED = 4404
DEFAULT_TAIL = 200
MAX_TAIL = 2000
RATE_LINES = 20_000  # per viewer: the page renders batches per animation frame
BUFFER_MESSAGES = 200
BACKFILL_TIMEOUT = 12.0
ACCESS_ENDED = "your access to this log ended"
NOT_PLACED = "the container is not placed on a host yet"


def _key(line: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return cursors.sort_key(str(line.get("cursor", "")))
    except ValueError:
        return None


_frames: OrderedDict[tuple[tuple[str, str], str, int, int], str] = OrderedDict()
FRAMES_KEPT = 64


def _frame(
    stream: tuple[str, str], epoch: str, start: int, end: int, lines: list[dict[str, Any]]
) -> str | None:
    """The text of a whole batch's ``lines`` message, encoded once per panel process: every viewer
    of a stream (its host, or "", and its group) that gets the whole batch gets the same text (a
    batch is known by its publisher's epoch and its start and end counts in the group). The host
    is part of it: a host can never have its text sent to the viewers of another host's stream."""
    if not epoch:
        return None
    key = (stream, epoch, start, end)
    text = _frames.get(key)
    if text is None:
        text = json.dumps({"type": "lines", "lines": lines})
        _frames[key] = text
        if len(_frames) > FRAMES_KEPT:
            _frames.popitem(last=False)
    return text


def _well_formed(event: Any) -> bool:
    """Whether a message from a stream's layer has the shape the handlers read (a host's agent
    writes them: one sending junk stops nothing but its own lines)."""
    if not isinstance(event, dict) or event.get("type") not in ("logs.batch", "logs.backfill"):
        return False
    lines = event.get("lines")
    numbers = (event.get(k, 0) for k in ("skipped", "start", "end"))
    return (
        (lines is None or (isinstance(lines, list) and all(isinstance(x, dict) for x in lines)))
        and all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
        and isinstance(event.get("epoch", ""), str)
        and isinstance(event.get("error", ""), str | None)
    )


class LogConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    group = ""
    frames_of = ("", "")
    guard: AccessGuard | None = None
    lines: Any = None  # the layer line batches arrive on
    lines_channel = ""  # this consumer's channel there, when it is not the consumer's own layer

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.kind = str(kwargs.get("kind", "container"))
        self.key = str(kwargs["key"])
        self.last: tuple[int, int] | None = None
        self.epoch, self.end = "", 0
        self.ready = False
        self.held: deque[dict[str, Any]] = deque(maxlen=BUFFER_MESSAGES)
        self.held_skipped = 0
        self.tokens, self.refilled = float(RATE_LINES), time.monotonic()
        self.tasks: list[asyncio.Task[None]] = []
        self.order = asyncio.Lock()
        self.deadline: asyncio.Task[None] | None = None
        await self.accept()
        user = self.scope.get("user")
        try:
            group = group_name(self.kind, self.key)
            allowed = await database_sync_to_async(access.may_watch)(user, self.kind, self.key)
        except ValueError:
            allowed = False
        if not allowed:
            await self.close(code=REFUSED)
            return
        self.group = group
        source = None
        if self.kind == "container":
            source = await database_sync_to_async(services.container_source)(self.key)
        await self._join(source.host if source is not None else None)
        kind, key = self.kind, self.key
        self.guard = AccessGuard(self, lambda: access.may_keep_watching(user, kind, key), self._access_lost)
        await self.guard.start(getattr(user, "pk", None))
        query = parse_qs(self.scope.get("query_string", b"").decode())
        after = (query.get("after") or [""])[0] or None
        if after is not None and not cursors.is_valid(after):
            await self.send_json({"type": "error", "message": f"invalid cursor {after!r}; starting afresh"})
            after = None
        try:
            tail = max(0, min(int((query.get("tail") or [DEFAULT_TAIL])[0]), MAX_TAIL))
        except ValueError:
            tail = DEFAULT_TAIL
        if self.kind != "container":
            async with self.order:
                await self._become_ready()
            return
        if source is None:
            async with self.order:
                await self.send_json({"type": "error", "message": NOT_PLACED})
                await self._become_ready()
            return
        watch = {"type": "logs.watch", "replica": source.replica, "container": source.container}
        await self.lines.group_send(
            WATCH_GROUP, watch | {"reply_to": self.lines_channel, "tail": tail, "after": after}
        )
        self.tasks.append(asyncio.create_task(self._renew(watch)))
        self.deadline = asyncio.create_task(self._backfill_deadline())
        self.tasks.append(self.deadline)

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        if self.guard is not None:
            await self.guard.stop()
        await self._leave()

    async def _join(self, host: str | None) -> None:
        """Listen for the stream's batches: a placed container's on its host's layer (where the
        backfill comes too, on the same channel), any other on the lines layer."""
        self.lines = host_layer(host) if host is not None else lines_layer()
        self.frames_of = (host or "", self.group)
        if self.lines is self.channel_layer:
            await self.channel_layer.group_add(self.group, self.channel_name)
            return
        self.lines_channel = await self.lines.new_channel()
        await self.lines.group_add(self.group, self.lines_channel)
        self.tasks.insert(0, asyncio.create_task(self._receive_lines()))

    async def _receive_lines(self) -> None:
        """Take batches off the lines layer as they come (its queue per channel is not bounded);
        keep the newest BUFFER_MESSAGES for the sender, so a viewer this process cannot serve
        fast enough is told what it skipped (``_forward`` counts the gap) instead of lagging."""
        inbox: deque[dict[str, Any]] = deque(maxlen=BUFFER_MESSAGES)
        waiting = asyncio.Event()
        sender = asyncio.create_task(self._send_lines(inbox, waiting))
        try:
            while True:
                event = await self.lines.receive(self.lines_channel)
                if not _well_formed(event):
                    continue  # a host sends only to viewers of its own replicas, but nothing to crash on
                if event["type"] == "logs.batch":
                    inbox.append(event)
                    waiting.set()
                elif event["type"] == "logs.backfill":
                    await self.logs_backfill(event)
        finally:
            sender.cancel()

    async def _send_lines(self, inbox: deque[dict[str, Any]], waiting: asyncio.Event) -> None:
        while True:
            await waiting.wait()
            waiting.clear()
            while inbox:
                await self.logs_batch(inbox.popleft())

    async def _leave(self) -> None:
        if self.group:
            group, self.group = self.group, ""
            if self.lines_channel:
                await self.lines.group_discard(group, self.lines_channel)
            else:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Messages of the consumer's own channel. An access change stops lines from going out at
        once, before Channels' dispatch waits for the database thread, until the re-check has
        answered: batches arrive on another layer, so they must not overtake this message."""
        if message.get("type") == "access.changed":
            async with self.order:
                await super().dispatch(message)
            return
        await super().dispatch(message)

    async def access_changed(self, event: dict[str, Any]) -> None:
        """A membership, token or user of this viewer changed: re-check now (``dispatch`` holds lines)."""
        if self.guard is not None:
            await self.guard.recheck()

    async def _access_lost(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self._leave()  # no further line reaches this socket
        await self.send_json({"type": "error", "message": ACCESS_ENDED})
        await self.close(code=REFUSED)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; anything they send is ignored."""

    async def _renew(self, watch: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW)
            await self.lines.group_send(WATCH_GROUP, watch)

    async def _backfill_deadline(self) -> None:
        await asyncio.sleep(BACKFILL_TIMEOUT)
        await self.channel_layer.send(self.channel_name, {"type": "logs.backfill_timeout"})

    # ---- group and agent messages ---------------------------------------------------
    async def logs_backfill(self, event: dict[str, Any]) -> None:
        async with self.order:
            await self._backfill(event)

    async def _backfill(self, event: dict[str, Any]) -> None:
        if self.ready:
            return
        if event.get("error"):
            await self.send_json({"type": "error", "message": str(event["error"])})
        if event.get("lost"):
            await self.send_json({"type": "lost"})
        if event.get("skipped"):
            await self.send_json({"type": "skipped", "count": int(event["skipped"])})
        lines = list(event.get("lines") or [])
        if lines:
            await self.send_json({"type": "lines", "lines": lines})
            self.last = _key(lines[-1])
        await self._become_ready()

    async def logs_backfill_timeout(self, event: dict[str, Any]) -> None:
        async with self.order:
            if not self.ready:
                await self.send_json(
                    {"type": "error", "message": "the host agent did not answer; showing new lines only"}
                )
                await self._become_ready()

    async def logs_batch(self, event: dict[str, Any]) -> None:
        if not self.group:
            return  # access ended: lines still queued are dropped
        if not self.ready:
            if len(self.held) == self.held.maxlen:
                self.held_skipped += len(self.held[0].get("lines") or [])
            self.held.append(event)
            return
        async with self.order:
            if self.group:  # access may have ended while this batch waited
                await self._forward(event)

    async def _become_ready(self) -> None:
        self.ready = True
        if self.deadline is not None:
            self.deadline.cancel()
        await self.send_json({"type": "ready"})
        skipped, self.held_skipped = self.held_skipped, 0
        while self.held:
            event = self.held.popleft()
            await self._forward(event, extra_skipped=skipped)
            skipped = 0
        if skipped:
            await self.send_json({"type": "skipped", "count": skipped})

    async def _forward(self, event: dict[str, Any], extra_skipped: int = 0) -> None:
        skipped = extra_skipped + int(event.get("skipped") or 0)
        epoch, start, end = str(event.get("epoch", "")), int(event.get("start", 0)), int(event.get("end", 0))
        if epoch == self.epoch and start > self.end:
            skipped += start - self.end  # whole messages the layer dropped (a full channel)
        if epoch != self.epoch or end > self.end:
            self.epoch, self.end = epoch, end
        lines = list(event.get("lines") or [])
        first = _key(lines[0]) if lines and self.last is not None else None
        if self.last is not None and (first is None or first <= self.last):
            # a batch's cursors rise: only one that begins at or before the last line sent is sifted
            lines = [x for x in lines if (key := _key(x)) is None or key > self.last]
        now = time.monotonic()
        self.tokens = min(float(RATE_LINES), self.tokens + (now - self.refilled) * RATE_LINES)
        self.refilled = now
        allowed = min(len(lines), int(self.tokens))
        if allowed < len(lines):
            skipped += len(lines) - allowed
            lines = lines[len(lines) - allowed :] if allowed else []
        self.tokens -= allowed
        if skipped:
            await self.send_json({"type": "skipped", "count": skipped})
        if lines:
            whole = len(lines) == len(event.get("lines") or [])
            frame = _frame(self.frames_of, epoch, start, end, lines) if whole else None
            await self.send(text_data=frame or json.dumps({"type": "lines", "lines": lines}))
            self.last = _key(lines[-1]) or self.last
