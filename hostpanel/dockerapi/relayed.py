"""An exec session on the container's host, seen from the door: the browser terminal's relay.

The door asks the host agent to start the process (``dispatch.send_start_exec``, the task the
browser terminal uses); the agent's relay (hostpanel/agent/relay.py) sends its output to
this session's channel and listens for input on the session's group. :class:`RelayedSession`
is an :class:`engine.dockerapi.streams.Endpoint`, so the door's hijacked connection is relayed
by the engine's own :func:`engine.dockerapi.streams.relay`. Output arrives ready to forward:
raw from a terminal, as multiplexed frames from a non-TTY exec.

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
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

from engine.dockerapi.http import APIError
from hostpanel.terminal import services

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
    """One exec session's channel (output, exit) and group (input, resize, close)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="docker-exec-layer", daemon=True)
        self._thread.start()
        self.layer: Any = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
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

    async def _receive(self) -> None:
        with contextlib.suppress(Exception):  # the layer closed under it (the session ended)
            while True:
                self.messages.put(await self.layer.receive(self.channel))

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
        """Send to the agent's ``channel``, waiting while it is full; a 504 after ``patience`` s."""
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
        with contextlib.suppress(Exception):
            self._call(self.layer.close_pools())
        self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(LAYER_TIMEOUT_SECONDS)
        with contextlib.suppress(RuntimeError):
            self.loop.close()
