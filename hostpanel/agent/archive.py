"""The host agent's side of ``docker cp`` through the tenants' door, over its host's layer.

:func:`start` is called by the ``start_copy`` task and returns at once: the copy runs in a thread
with its own loop and connection to its host's layer, like an exec session
(hostpanel/agent/relay.py: the same :class:`HostLink`, so an enrolled agent copies as its own Redis
user on its own channels).
Paths are resolved by the engine's copy functions (inside the container's root: links never
reach the host; archive members are checked).

Messages to the door's channel (``reply_channel``):

- out of the container: ``copy.stat`` (``stat``: the PathStat fields; ``channel``: where the door
  sends ``copy.ack``), then, unless only the stat was asked for, ``copy.data`` (``data``) chunks
  and ``copy.done``;
- into the container: ``copy.ready`` (``channel``: where the door sends ``copy.data`` chunks and
  ``copy.end``), ``copy.ack`` as chunks are written, then ``copy.done`` (``count``: members
  written);
- on failure, at any point: ``copy.error`` (``status``: dockerd's for the engine error, ``message``).

Chunks go at most a window ahead of their acks (hostpanel/terminal/flow.py), both ways.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from engine.dockerapi.http import status_of
from engine.engine import Engine
from engine.errors import EngineError
from hostpanel.agent.relay import STALL_SECONDS, HostLink, send_waiting
from hostpanel.terminal.flow import Acks, Window, acked_bytes

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class Gone(Exception):
    """The door stopped taking (or sending) the archive."""


@dataclass(frozen=True)
class CopyRequest:
    """One copy the door admitted: which container, which path, which way."""

    container_name: str
    reply_channel: str
    path: str
    upload: bool = False
    stat_only: bool = False
    keep_owners: bool = False
    no_overwrite_dir_non_dir: bool = False


def start(engine: Engine, request: CopyRequest, link: HostLink) -> threading.Thread:
    """Run ``request`` in a new thread of this process; returns the (started) thread."""
    thread = threading.Thread(target=_run, args=(engine, request, link), name="docker-cp", daemon=True)
    thread.start()
    return thread


def _run(engine: Engine, request: CopyRequest, link: HostLink) -> None:
    try:
        asyncio.run(_copy(engine, request, link))
    except Exception:
        log.exception("copy %s of %s failed", request.path, request.container_name)


class _Writer:
    """The archive's writes, as ``copy.data`` chunks to the door (waiting while its channel is full)."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self._buffer = bytearray()

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            self._send({"type": "copy.data", "data": bytes(self._buffer[:CHUNK])})
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._send({"type": "copy.data", "data": bytes(self._buffer)})
            self._buffer.clear()


class _Reader:
    """The door's ``copy.data`` chunks as a ``read(n)`` stream; ``copy.end`` is its end."""

    def __init__(self, receive: Callable[[], dict[str, Any]]) -> None:
        self._receive = receive
        self._buffer = b""
        self._ended = False

    def read(self, size: int = -1, /) -> bytes:
        while not self._ended and (size < 0 or len(self._buffer) < size):
            message = self._receive()
            if message.get("type") == "copy.data" and isinstance(message.get("data"), bytes):
                self._buffer += message["data"]
            elif message.get("type") == "copy.end":
                self._ended = True
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


async def _copy(engine: Engine, request: CopyRequest, link: HostLink) -> None:
    layer = link.layer()
    loop = asyncio.get_running_loop()
    window, acks = Window(), Acks()
    inbox = await layer.new_channel(prefix="copy-in.")
    acker: asyncio.Task[None] | None = None

    def call(coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    async def send_chunk(message: dict[str, Any]) -> bool:
        if not await window.room(STALL_SECONDS):
            return False
        window.sent(len(message.get("data") or b""))
        return await send_waiting(layer, request.reply_channel, message)

    def send(message: dict[str, Any]) -> None:
        if not call(send_chunk(message), STALL_SECONDS + 5):
            raise Gone("the door stopped reading the archive")

    async def take_acks() -> None:
        while True:
            if (count := acked_bytes(await layer.receive(inbox), "copy.ack")) is not None:
                window.acked(count)

    reply = request.reply_channel
    try:
        if request.upload:

            async def next_chunk() -> dict[str, Any]:
                message: dict[str, Any] = await asyncio.wait_for(layer.receive(inbox), STALL_SECONDS)
                data = message.get("data")
                taken = (
                    acks.took(len(data))
                    if message.get("type") == "copy.data" and isinstance(data, bytes)
                    else 0
                )
                if taken:
                    await layer.send(reply, {"type": "copy.ack", "bytes": taken})
                return message

            def receive() -> dict[str, Any]:
                try:
                    message: dict[str, Any] = call(next_chunk(), STALL_SECONDS + 5)
                except TimeoutError as exc:
                    raise Gone("the door stopped sending the archive") from exc
                return message

            await send_waiting(layer, reply, {"type": "copy.ready", "channel": inbox})
            count = await asyncio.to_thread(
                engine.copy_to,
                request.container_name,
                request.path,
                _Reader(receive),
                keep_owners=request.keep_owners,
                no_overwrite_dir_non_dir=request.no_overwrite_dir_non_dir,
            )
            await send_waiting(layer, reply, {"type": "copy.done", "count": count})
            return
        info = await asyncio.to_thread(engine.stat_path, request.container_name, request.path)
        stat = {"type": "copy.stat", "stat": dataclasses.asdict(info), "channel": inbox}
        await send_waiting(layer, reply, stat)
        if request.stat_only:
            return
        acker = asyncio.create_task(take_acks())
        writer = _Writer(send)

        def export() -> None:
            engine.copy_from(request.container_name, request.path, writer)
            writer.flush()

        await asyncio.to_thread(export)
        await send_waiting(layer, reply, {"type": "copy.done"})
    except Gone:
        return
    except Exception as exc:  # the door must hear of it: an engine error's class says its status
        if not isinstance(exc, EngineError):
            log.exception("copy %s of %s failed", request.path, request.container_name)
        status = status_of(exc) if isinstance(exc, EngineError) else 500
        failure = {"type": "copy.error", "status": status, "message": str(exc)}
        await send_waiting(layer, reply, failure, patience=1.0)
    finally:
        if acker is not None:
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
