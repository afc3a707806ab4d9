"""An exec session on the container's host, seen from the door: the browser terminal's relay.

The door asks the host agent to start the process (``dispatch.send_start_exec``, the task the
browser terminal uses); the agent's relay (hostpanel/agent/relay.py) sends its output to
this session's channel and listens for input on the session's group, both on the container's
host's layer (hostpanel/hosts/layer.py: only that host's Redis user may use its channels). Output
is acknowledged as it is handed on, and chunks sent to the host wait for acks
(hostpanel/terminal/flow.py): a client that stops reading stalls the host, not the door's memory.
:class:`RelayedSession` is an :class:`engine.dockerapi.streams.Endpoint`, so the door's hijacked
connection is relayed by the engine's own :func:`engine.dockerapi.streams.relay`. Output arrives
ready to forward: raw from a terminal, as multiplexed frames from a non-TTY exec.

The door's server is threaded (no event loop): each session runs its channel-layer connection
on a loop in its own thread, and a receiver task there queues every message for the
connection's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Coroutine
from typing import Any

from channels.exceptions import ChannelFull

from engine.dockerapi.http import APIError
from hostpanel.hosts.layer import host_layer
from hostpanel.terminal import services
from hostpanel.terminal.flow import Acks, Window, acked_bytes

START_TIMEOUT_SECONDS = 20.0
STALL_SECONDS = 30.0
LAYER_TIMEOUT_SECONDS = 10.0


def agent_error(message: dict[str, Any]) -> APIError:
    """An agent's ``*.error`` message (its engine error's status as dockerd gives it) as an answer."""
    status = message.get("status")
    if not (isinstance(status, int) and 400 <= status < 600):
        status = 500
    return APIError(status, str(message.get("message")))


class RelayedSession:
    """One exec session's (or copy's) channel (output, exit) and group (input, resize, close), on
    the layer of the container's ``host``."""

    def __init__(self, host: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="docker-exec-layer", daemon=True)
        self._thread.start()
        self.layer: Any = host_layer(host)
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.window = self._call_soon(Window)  # made on the loop, used there
        self.acks = Acks()
        self.group = ""
        self.exit_code: int | None = None
        self.ended = False
        self._closed = False
        try:
            self.channel: str = self._call(self.layer.new_channel(prefix="docker-exec"))
        except BaseException:
            self._stop_loop()
            raise
        self._receiver = asyncio.run_coroutine_threadsafe(self._receive(), self.loop)

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(LAYER_TIMEOUT_SECONDS)

    def _call_soon(self, make: Any) -> Any:
        async def made() -> Any:
            return make()

        return self._call(made())

    async def _receive(self) -> None:
        with contextlib.suppress(Exception):  # the layer closed under it (the session ended)
            while True:
                message = await self.layer.receive(self.channel)
                if not isinstance(message, dict):
                    continue
                if (count := acked_bytes(message, "copy.ack")) is not None:
                    self.window.acked(count)  # the host wrote that much of an upload
                else:
                    self.messages.put(message)

    def took(self, data: bytes, channel: str = "") -> None:
        """``data`` was handed on to the client: acknowledge it (in ACK_EVERY steps) to the agent's
        ``channel`` (a copy), else to the session's group (an exec)."""
        if count := self.acks.took(len(data)):
            message = {"type": "copy.ack" if channel else "exec.ack", "bytes": count}
            if channel:
                self._call(self.layer.send(channel, message))
            else:
                self._send(message)

    def wait_started(self, session: str, rows: int, cols: int, timeout: float = START_TIMEOUT_SECONDS) -> int:
        """Wait for the agent to start the process; its pid. APIError when it could not start."""
        self.group = services.group_name(session)
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise APIError(
                504, f"the container's host did not start the exec within {timeout:.0f} s; try again"
            ) from None
        kind = message.get("type")
        if kind == "exec.error":
            raise agent_error(message)
        if kind != "exec.started":
            raise APIError(500, f"the container's host answered {kind!r} instead of starting the exec")
        self.resize(rows, cols)  # the relay expects a first word from its client, as from a browser
        return int(message.get("pid") or 0)

    # ---- engine.dockerapi.streams.Endpoint --------------------------------------------------
    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """Output as it came from the agent; ('', b'') once the session ended (its code kept)."""
        if self.ended:
            return ("", b"")
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return None
        kind = message.get("type")
        if kind == "exec.output" and isinstance(message.get("data"), bytes):
            self.took(message["data"])  # the caller writes it before it reads again
            return ("stdout", message["data"])
        if kind in ("exec.exit", "exec.error"):
            code = message.get("code")
            self.exit_code = code if isinstance(code, int) else None
            self.ended = True
            return ("", b"")
        return None

    def write(self, data: bytes) -> None:
        """The client's input, to the process."""
        self._send({"type": "exec.input", "data": data})

    def close_stdin(self) -> None:
        """The client closed its input: the process reads end of file (no terminal)."""
        self._send({"type": "exec.eof"})

    # ---- the rest ---------------------------------------------------------------------------
    def resize(self, rows: int, cols: int) -> None:
        """Resize the process's terminal (nothing without one)."""
        self._send({"type": "exec.resize", "rows": rows, "cols": cols})

    def wait_exit(self, timeout: float | None = None) -> int | None:
        """Drop output until the session ends (a detached exec); its exit code."""
        while not self.ended:
            if self.read(timeout) is None and timeout is not None:
                break
        return self.exit_code

    def next_message(self, timeout: float = START_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The agent's next message; a 504 when none came within ``timeout`` seconds."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            message = f"the container's host did not answer within {timeout:.0f} s; try again"
            raise APIError(504, message) from None

    def send_to(self, channel: str, message: dict[str, Any], patience: float = STALL_SECONDS) -> None:
        """Send to the agent's ``channel``, waiting while it is full or a window of chunks is not
        acknowledged; a 504 after ``patience`` s."""
        size = len(message.get("data") or b"")
        room = asyncio.run_coroutine_threadsafe(self.window.room(patience), self.loop)
        if not room.result(patience + LAYER_TIMEOUT_SECONDS):
            raise APIError(504, "the container's host stopped taking the archive")
        self._call_soon(lambda: self.window.sent(size))
        deadline = time.monotonic() + patience
        while True:
            try:
                self._call(self.layer.send(channel, message))
                return
            except ChannelFull:
                if time.monotonic() > deadline:
                    raise APIError(504, "the container's host stopped taking the archive") from None
                time.sleep(0.02)

    def _send(self, message: dict[str, Any]) -> None:
        if self.group and not self._closed:
            self._call(self.layer.group_send(self.group, message))

    def stop(self, reason: str) -> None:
        """Ask the agent to end the session (it kills the process and reports the exit)."""
        if not self.ended:
            self._send({"type": "exec.close", "reason": reason})

    def close(self, reason: str = "the Docker API client went away") -> None:
        """End the session (the agent kills the process if it still runs) and free the layer."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.stop(reason)
        self._closed = True
        self._receiver.cancel()
        self._stop_loop()  # closing the loop closes its connections to the layer

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(LAYER_TIMEOUT_SECONDS)
        with contextlib.suppress(RuntimeError):
            self.loop.close()
