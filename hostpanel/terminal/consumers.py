"""The terminal WebSocket: ``ws/containers/<replica_id>/exec/?rows=R&cols=C``.

Thin, as DESIGN.md asks: authenticate and check access (``services.open_session``,
which also opens the audit entry), ask the container's host agent to start the
session (``dispatch.send_start_exec``), then forward. Both directions are on the
container's host's layer (hostpanel/hosts/layer.py: Redis pub/sub under ``hostlogs.<host>.``,
whose channels only that host's Redis user may use): the agent's relay sends output to
this consumer's channel there, and this consumer sends input to the group
``exec.<session>`` there, which the relay listens on (see hostpanel/agent/relay.py). What
comes from the host is checked for shape before it is used, and output is acknowledged
as it is sent to the browser (``exec.ack``, hostpanel/terminal/flow.py): the relay keeps
at most a window unacknowledged, so a browser that stops reading stalls the process, not
the panel's memory.

Browser -> server: binary frames are typed input; text frames are JSON
``{"type": "resize", "rows": R, "cols": C}`` (or ``{"type": "input", "data": "..."}``).
Server -> browser: binary frames are terminal output; text frames are JSON
``{"type": "status", "state": "starting" | "connected"}``,
``{"type": "exit", "code": N, "reason": "..."}`` or ``{"type": "error", "message": "..."}``.

A refused socket (anonymous, another tenant's or an unknown container: 4404;
a viewer: 4403; not on a host: 4409) is accepted, told why, and closed. An open
session re-checks its access (hostpanel/tenants/watch.py): when the member is
removed or demoted below developer, or the user disabled, the shell is ended,
the browser told why and the socket closed with 4403 within seconds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from hostpanel.errors import Conflict, Forbidden, InvalidRequest, NotFound, ServiceError
from hostpanel.hosts import dispatch
from hostpanel.hosts.layer import host_layer
from hostpanel.tenants.access import actor_of
from hostpanel.tenants.watch import AccessGuard
from hostpanel.terminal import services
from hostpanel.terminal.flow import Acks

CLOSE_CODES: dict[type[ServiceError], int] = {Forbidden: 4403, NotFound: 4404, Conflict: 4409}
START_TIMEOUT_SECONDS = 20.0
MAX_PENDING_INPUT = 64 * 1024
ACCESS_ENDED = "your access to this container ended (removed from its tenant, or no longer a developer)"


def _well_formed(event: Any) -> bool:
    """Whether a message from the host's layer is one the relay sends, with the fields the
    handlers read (a host writes them: junk is dropped, never crashes the consumer)."""
    if not isinstance(event, dict):
        return False
    kind, code = event.get("type"), event.get("code")
    if kind == "exec.output":
        return isinstance(event.get("data"), bytes)
    if kind == "exec.exit":
        return (code is None or type(code) is int) and isinstance(event.get("reason"), str)
    if kind == "exec.error":
        return isinstance(event.get("message"), str)
    return kind == "exec.started"


HANDLERS = {
    "exec.started": "exec_started",
    "exec.output": "exec_output",
    "exec.exit": "exec_exit",
    "exec.error": "exec_error",
}


class ExecConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    ticket: services.ExecTicket | None = None
    guard: AccessGuard | None = None
    relay_layer: Any = None  # the container's host's layer, once admitted
    relay_channel = ""  # this consumer's channel there: what the relay sends comes in
    listener: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.started = False
        self.ended = False
        self.pending_input: list[bytes] = []
        self.pending_size = 0
        self.deadline: asyncio.Task[None] | None = None
        self.acks = Acks()
        await self.accept()
        actor = actor_of(self.scope)
        replica_id = int(self.scope["url_route"]["kwargs"]["replica_id"])
        try:
            self.ticket = await database_sync_to_async(services.open_session)(actor, replica_id)
        except (NotFound, Forbidden, Conflict, InvalidRequest) as exc:
            await self._refuse(str(exc), CLOSE_CODES.get(type(exc), 4400))
            return
        self.guard = AccessGuard(self, lambda: services.may_continue(actor, replica_id), self._access_lost)
        await self.guard.start(getattr(actor.user, "pk", None))
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.size = services.terminal_size((query.get("rows") or [""])[0], (query.get("cols") or [""])[0])
        await self._status("starting")
        self.relay_layer = host_layer(self.ticket.host)
        self.relay_channel = await self.relay_layer.new_channel()
        self.listener = asyncio.create_task(self._listen())
        await sync_to_async(dispatch.send_start_exec, thread_sensitive=False)(
            self.ticket,
            reply_channel=self.relay_channel,
            rows=self.size[0],
            cols=self.size[1],
            idle_seconds=services.idle_seconds(),
            expires=START_TIMEOUT_SECONDS,
        )
        self.deadline = asyncio.create_task(self._start_deadline())

    async def disconnect(self, code: int) -> None:
        if self.guard is not None:
            await self.guard.stop()
        await self._end("the browser left before the session started")
        if self.listener is not None:
            self.listener.cancel()  # its receive unsubscribes the channel

    async def _listen(self) -> None:
        """What the relay sends to this consumer's channel on the host's layer, to the handlers."""
        while True:
            event = await self.relay_layer.receive(self.relay_channel)
            if not _well_formed(event):
                continue
            handler = getattr(self, HANDLERS[event["type"]])
            await handler(event)

    async def _end(self, reason: str, close_reason: str | None = None) -> None:
        """End the session once: tell the relay to stop the shell; complete the audit entry if
        the relay never came (nobody else will)."""
        if self.deadline is not None:
            self.deadline.cancel()
        if self.ticket is not None and not self.ended:
            self.ended = True
            close: dict[str, Any] = {"type": "exec.close"}
            if close_reason:
                close["reason"] = close_reason
            if self.relay_layer is not None:
                await self.relay_layer.group_send(services.group_name(self.ticket.session), close)
            if not self.started:
                await database_sync_to_async(services.finish_session)(self.ticket.audit_id, None, reason)

    async def access_changed(self, event: dict[str, Any]) -> None:
        """A membership, token or user of this session's user changed: re-check now."""
        if self.guard is not None:
            await self.guard.recheck()

    async def _access_lost(self) -> None:
        already_ended = self.ended
        await self._end(ACCESS_ENDED, close_reason=ACCESS_ENDED)
        if not already_ended:
            await self.send(text_data=json.dumps({"type": "error", "message": ACCESS_ENDED}))
            await self.close(code=4403)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ticket is None or self.ended:
            return
        if bytes_data is not None:
            await self._input(bytes_data)
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "resize":
            self.size = services.terminal_size(message.get("rows"), message.get("cols"))
            if self.started:
                await self._to_relay({"type": "exec.resize", "rows": self.size[0], "cols": self.size[1]})
        elif message.get("type") == "input" and isinstance(message.get("data"), str):
            await self._input(message["data"].encode())

    # ---- from the relay on the host agent ------------------------------------------
    async def exec_started(self, event: dict[str, Any]) -> None:
        if self.started or self.ended:
            return
        if self.deadline is not None:
            self.deadline.cancel()
        # the relay takes this first message as the sign that its browser is here
        await self._to_relay({"type": "exec.resize", "rows": self.size[0], "cols": self.size[1]})
        for chunk in self.pending_input:  # what is typed meanwhile is appended, and sent in order
            await self._to_relay({"type": "exec.input", "data": chunk})
        self.pending_input, self.pending_size = [], 0
        self.started = True
        await self._status("connected")

    async def exec_output(self, event: dict[str, Any]) -> None:
        await self.send(bytes_data=event["data"])
        if count := self.acks.took(len(event["data"])):
            await self._to_relay({"type": "exec.ack", "bytes": count})

    async def exec_exit(self, event: dict[str, Any]) -> None:
        self.ended = True
        await self.send(
            text_data=json.dumps({"type": "exit", "code": event["code"], "reason": event["reason"]})
        )
        await self.close(code=1000)

    async def exec_error(self, event: dict[str, Any]) -> None:
        self.ended = True
        await self.send(text_data=json.dumps({"type": "error", "message": event["message"]}))
        await self.close(code=4500)

    async def exec_start_timeout(self, event: dict[str, Any]) -> None:
        if self.started or self.ended or self.ticket is None:
            return
        self.ended = True
        message = "the container's host agent did not answer; try again later"
        await database_sync_to_async(services.finish_session)(self.ticket.audit_id, None, message)
        await self.send(text_data=json.dumps({"type": "error", "message": message}))
        await self.close(code=4504)

    # ---- helpers ----------------------------------------------------------------------
    async def _start_deadline(self) -> None:
        await asyncio.sleep(START_TIMEOUT_SECONDS)
        await self.channel_layer.send(self.channel_name, {"type": "exec.start_timeout"})

    async def _input(self, data: bytes) -> None:
        if self.started:
            await self._to_relay({"type": "exec.input", "data": data})
        elif self.pending_size + len(data) <= MAX_PENDING_INPUT:
            self.pending_input.append(data)
            self.pending_size += len(data)

    async def _to_relay(self, message: dict[str, Any]) -> None:
        assert self.ticket is not None
        await self.relay_layer.group_send(services.group_name(self.ticket.session), message)

    async def _status(self, state: str) -> None:
        await self.send(text_data=json.dumps({"type": "status", "state": state}))

    async def _refuse(self, message: str, code: int) -> None:
        self.ended = True
        await self.send(text_data=json.dumps({"type": "error", "message": message}))
        await self.close(code=code)
