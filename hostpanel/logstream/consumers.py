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

Bounds per connection: live lines while the backfill is pending are held in a
deque of BUFFER_MESSAGES messages; at most RATE_LINES lines a second are sent
(the newest of each batch), the rest counted as skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from hostpanel.agent import follower
from hostpanel.logstream import access, cursors, services
from hostpanel.logstream.publish import group_name
from hostpanel.tenants.watch import AccessGuard

REFUSED = 4404
DEFAULT_TAIL = 200
MAX_TAIL = 2000
RATE_LINES = 2000
BUFFER_MESSAGES = 200
BACKFILL_TIMEOUT = 12.0
ACCESS_ENDED = "your access to this log ended"


def _key(line: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return cursors.sort_key(str(line.get("cursor", "")))
    except ValueError:
        return None


class LogConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    group = ""
    guard: AccessGuard | None = None

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
        await self.channel_layer.group_add(self.group, self.channel_name)
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
            await self._become_ready()
            return
        source = await database_sync_to_async(services.container_source)(self.key)
        if source is None:
            await self.send_json({"type": "error", "message": "the container is not placed on a host yet"})
            await self._become_ready()
            return
        watch = {"type": "logs.watch", "replica": source.replica, "container": source.container}
        await self.channel_layer.group_send(
            source.agent_group, watch | {"reply_to": self.channel_name, "tail": tail, "after": after}
        )
        self.tasks.append(asyncio.create_task(self._renew(source.agent_group, watch)))
        self.tasks.append(asyncio.create_task(self._backfill_deadline()))

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        if self.guard is not None:
            await self.guard.stop()
        await self._leave()

    async def _leave(self) -> None:
        if self.group:
            group, self.group = self.group, ""
            await self.channel_layer.group_discard(group, self.channel_name)

    async def access_changed(self, event: dict[str, Any]) -> None:
        """A membership, token or user of this viewer changed: re-check now."""
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

    async def _renew(self, agent_group: str, watch: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(follower.LEASE_RENEW)
            await self.channel_layer.group_send(agent_group, watch)

    async def _backfill_deadline(self) -> None:
        await asyncio.sleep(BACKFILL_TIMEOUT)
        await self.channel_layer.send(self.channel_name, {"type": "logs.backfill_timeout"})

    # ---- group and agent messages ---------------------------------------------------
    async def logs_backfill(self, event: dict[str, Any]) -> None:
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
        await self._forward(event)

    async def _become_ready(self) -> None:
        self.ready = True
        for task in self.tasks[1:]:
            task.cancel()  # the backfill deadline
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
        lines = []
        for line in event.get("lines") or []:
            key = _key(line)
            if key is not None and self.last is not None and key <= self.last:
                continue  # already sent (backfill overlap, or a repeat)
            lines.append(line)
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
            await self.send_json({"type": "lines", "lines": lines})
            self.last = _key(lines[-1]) or self.last
