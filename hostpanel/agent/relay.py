"""The host agent's side of a terminal: run the process on a pty and relay it over its host's layer.

:func:`start` is called by the ``start_exec`` task and returns at once: the
session runs in a thread of the agent process with its own asyncio loop and
its own connection to its host's layer (hostpanel/hosts/layer.py: Redis pub/sub under
``hostlogs.<host>.``; an enrolled agent connects as its own Redis user, which may use only
those channels), so a long session never holds a Celery worker slot. The
:class:`HostLink` says which layer and how the audit entry is completed: through the internal API
(``POST /internal/v1/exec/<id>/finished``).

Messages (Channels ``type`` names):

A session runs on a terminal (the browser's, ``docker exec -t``), or with piped stdio
(``tty`` false: ``docker exec`` without ``-t``), whose output then comes as Docker's
multiplexed frames (hostpanel/agent/pipes.py).

- to the consumer's channel (``reply_channel``): ``exec.started`` (``pid``),
  ``exec.output`` (``data``: bytes), ``exec.exit`` (``code``, ``reason``),
  ``exec.error`` (``message``, ``status``). Output is sent to that one channel, not to a
  group, and at most a window of it unacknowledged (hostpanel/terminal/flow.py), so a slow
  browser makes the relay wait, the pty fill up and the process block, instead of dropping
  output or piling it up in the panel.
- from the consumer, to the group ``exec.<session>`` the relay joins:
  ``exec.input`` (``data``: bytes), ``exec.resize`` (``rows``, ``cols``),
  ``exec.ack`` (``bytes`` of output handed on), ``exec.close``, ``exec.eof`` (the end of a
  non-TTY exec's input). The consumer
  answers ``exec.started`` with a resize, so a relay that hears nothing within
  ACK_SECONDS knows its browser is gone.

The session ends when the process exits, the browser closes, nothing is typed
or printed for the idle time, or the consumer stops taking output for
STALL_SECONDS (no ack); then every process of the exec is killed, the pty closed and the
audit entry completed. Input is never logged.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from engine.dockerapi.http import status_of
from engine.engine import Engine
from engine.errors import EngineError, InvalidSpec
from engine.runtime.model import ExecSpec
from engine.runtime.pty_exec import PtySession
from hostpanel.agent.pipes import PipeSession
from hostpanel.hosts.layer import host_layer
from hostpanel.terminal import services
from hostpanel.terminal.flow import Window, acked_bytes

log = logging.getLogger(__name__)

ACK_SECONDS = 15.0
STALL_SECONDS = 30.0
WRITE_PATIENCE_SECONDS = 5.0
TERM = "TERM=xterm-256color"

Session = PtySession | PipeSession
_active: dict[str, Session] = {}
_active_lock = threading.Lock()


@dataclass(frozen=True)
class RelayRequest:
    """One session the panel admitted (see services.ExecTicket) and where its browser listens."""

    session: str
    container_name: str
    reply_channel: str
    command: tuple[str, ...]
    rows: int
    cols: int
    audit_id: int
    idle_seconds: float
    tty: bool = True
    env: tuple[str, ...] = ()
    user: str | None = None
    workdir: str | None = None
    stdin: bool = True


@dataclass(frozen=True)
class HostLink:
    """How this agent's sessions reach the panel: its host's layer (``redis_url``: the host's own
    Redis user) and who completes an audit entry (``finish(audit_id, exit_code, reason)``: the
    internal API's ``exec/<id>/finished``)."""

    host: str
    redis_url: str
    finish: Callable[[int, int | None, str], Any]

    def layer(self) -> Any:
        """This host's layer (hostpanel/hosts/layer.py)."""
        return host_layer(self.host, self.redis_url)


def start(engine: Engine, request: RelayRequest, link: HostLink) -> threading.Thread:
    """Run ``request`` in a new thread of this process; returns the (started) thread."""
    thread = threading.Thread(
        target=_run, args=(engine, request, link), name=f"exec-{request.session[:8]}", daemon=True
    )
    thread.start()
    return thread


@atexit.register
def close_all() -> None:
    """Kill every session of this process (the agent is stopping): nothing may outlive it."""
    with _active_lock:
        sessions = list(_active.values())
    for session in sessions:
        with contextlib.suppress(Exception):
            session.close()


def _run(engine: Engine, request: RelayRequest, link: HostLink) -> None:
    try:
        asyncio.run(_relay(engine, request, link))
    except Exception:
        log.exception("exec session %s failed", request.session)


async def _relay(engine: Engine, request: RelayRequest, link: HostLink) -> None:
    layer = link.layer()
    code: int | None = None
    leftovers: list[asyncio.Task[str]] = []
    reason = "the session could not start"
    try:
        env = (TERM, *request.env) if request.tty else request.env
        spec = ExecSpec(command=request.command, env=env, user=request.user, workdir=request.workdir)
        try:
            session: Session = await asyncio.to_thread(_open, engine, request, spec)
        except Exception as exc:  # an engine error, or anything else: the browser must hear of it
            if not isinstance(exc, EngineError):
                log.exception("exec session %s could not start", request.session)
            reason = str(exc) if isinstance(exc, EngineError) else f"the session could not start: {exc}"
            status = status_of(exc) if isinstance(exc, EngineError) else 500
            failure = {"type": "exec.error", "message": reason, "status": status}
            await send_waiting(layer, request.reply_channel, failure)
            return
        with _active_lock:
            _active[request.session] = session
        group = services.group_name(request.session)
        inbox = await layer.new_channel(prefix="exec-relay.")
        try:
            await layer.group_add(group, inbox)
            started = {"type": "exec.started", "pid": session.pid}
            if await send_waiting(layer, request.reply_channel, started):
                try:
                    reason = await _pump(layer, inbox, session, request, leftovers)
                except Exception as exc:  # the layer failed (Redis gone): end, and say so
                    log.exception("relaying exec session %s failed", request.session)
                    reason = f"the relay failed: {exc}"
            else:
                reason = "the browser went away"
        finally:
            with _active_lock:
                _active.pop(request.session, None)
            code = await asyncio.to_thread(session.close)
            with contextlib.suppress(Exception):
                await layer.group_discard(group, inbox)
        await send_waiting(
            layer, request.reply_channel, {"type": "exec.exit", "code": code, "reason": reason}, patience=1.0
        )
    finally:
        await asyncio.to_thread(_finish, link, request.audit_id, code, reason)
        await asyncio.gather(*leftovers, return_exceptions=True)


def _open(engine: Engine, request: RelayRequest, spec: ExecSpec) -> Session:
    """The process on a terminal (``tty``), else with piped stdio whose output comes framed."""
    if request.tty:
        return engine.exec_pty(request.container_name, spec, rows=request.rows, cols=request.cols)
    return PipeSession.start(engine, request.container_name, spec, stdin=request.stdin)


def _finish(link: HostLink, audit_id: int, code: int | None, reason: str) -> None:
    try:
        link.finish(audit_id, code, reason)
    except Exception:  # the panel unreachable: the entry stays "started", the log says why
        log.exception("completing the audit entry %s failed", audit_id)


async def send_waiting(
    layer: BaseChannelLayer, channel: str, message: dict[str, Any], patience: float = STALL_SECONDS
) -> bool:
    """Send to ``channel``, waiting while it is full; False when it stayed full for ``patience`` s."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await layer.send(channel, message)
            return True
        except ChannelFull:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)


async def _readable(fd: int) -> None:
    """Wait until ``fd`` is readable."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _pump(
    layer: Any, inbox: str, session: Session, request: RelayRequest, leftovers: list[asyncio.Task[str]]
) -> str:
    """Relay both ways until the session should end; returns why it ended.

    The relay's tasks still unwinding are added to ``leftovers`` for the caller to await.
    """
    last_activity = time.monotonic()
    window = Window()

    async def send_output(data: bytes) -> bool:
        """Send ``data`` once the browser has taken all but less than a window; False if it stalled."""
        if not await window.room(STALL_SECONDS):
            return False
        window.sent(len(data))
        return await send_waiting(layer, request.reply_channel, {"type": "exec.output", "data": data})

    def touch() -> None:
        nonlocal last_activity
        last_activity = time.monotonic()

    async def output() -> str:
        while True:
            await _readable(session.fileno())
            data = session.read(timeout=0)
            if data is None:
                continue
            if data == b"":
                return "exited"
            if not await send_output(data):
                return "the browser stopped reading"
            touch()

    async def exited() -> str:
        await _readable(session.exit_fd())
        return "exited"

    async def inputs() -> str:
        first = True
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(inbox), ACK_SECONDS if first else None)
            except TimeoutError:
                return "the browser went away"
            first = False
            touch()
            kind = message.get("type")
            if (acked := acked_bytes(message, "exec.ack")) is not None:
                window.acked(acked)
            elif kind == "exec.input" and isinstance(message.get("data"), bytes):
                await _write(session, message["data"])
            elif kind == "exec.resize":
                with contextlib.suppress(InvalidSpec, TypeError, ValueError):
                    session.resize(*services.terminal_size(message.get("rows"), message.get("cols")))
            elif kind == "exec.eof" and isinstance(session, PipeSession):
                session.close_stdin()
            elif kind == "exec.close":
                return str(message.get("reason") or "closed by the browser")

    async def idle() -> str:
        while (remaining := last_activity + request.idle_seconds - time.monotonic()) > 0:
            await asyncio.sleep(remaining)
        return f"idle for {request.idle_seconds:.0f} s"

    tasks = [asyncio.create_task(job()) for job in (output, exited, inputs, idle)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    reason = next(iter(done)).result()
    receiving = tasks[2] if reason == "exited" else None  # acks still come while the rest goes out
    for task in pending:
        if task is not receiving:
            task.cancel()
    # Not awaited here: a cancelled channel-layer receive can take seconds to unwind, and the
    # browser must hear of the exit at once. The caller awaits them before closing the layer.
    leftovers.extend(pending)
    if reason == "exited":  # what it printed last is still in the pty
        while data := session.read(timeout=0.05):
            if not await send_output(data):
                break
    if receiving is not None:
        receiving.cancel()
    return reason


async def _write(session: Session, data: bytes) -> None:
    """Type ``data``, waiting (without blocking the loop) while the terminal's input buffer is full."""
    deadline = time.monotonic() + WRITE_PATIENCE_SECONDS
    while data and time.monotonic() < deadline:
        written = session.write(data, timeout=0)
        data = data[written:]
        if data:
            await asyncio.sleep(0.01)
