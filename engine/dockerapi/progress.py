"""Long operations (pull, push, build) answered as a stream of JSON progress messages.

The work runs on its own thread and reports through ``emit(message)``; the answer streams each
message as one JSON line, as the docker CLI renders them. A failure before the first message is
a plain HTTP error (a bad reference is a 400, an unknown image a 404); a failure after it is the
stream's last message, ``{"errorDetail": {"message": ...}, "error": ...}``, which the CLI prints
and exits non-zero on.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from engine.dockerapi.http import APIError, Stream
from engine.errors import EngineError

_log = logging.getLogger(__name__)
_QUIET_CHECK = 1.0
"""Seconds between checks that the client is still there while the work says nothing."""

Message = dict[str, Any]
Emit = Callable[[Message], None]
Work = Callable[[Emit], list[Message]]
"""``work(emit)`` reports progress through ``emit`` and returns the closing messages."""


def error_message(text: str) -> Message:
    """The message a stream ends with when the operation failed."""
    return {"errorDetail": {"message": text}, "error": text}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EngineError | APIError):
        return exc.message
    return f"internal error: {type(exc).__name__}: {exc}"


def client_gone(connection: socket.socket) -> bool:
    """Whether the client closed its end of ``connection`` (checked without consuming anything)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return False
        # peek below TLS too (an SSL socket refuses MSG_PEEK): end of stream means the client left
        with socket.fromfd(connection.fileno(), connection.family, connection.type) as raw:
            return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def streamed(
    work: Work,
    *,
    name: str = "docker-api-progress",
    connection: socket.socket | None = None,
    on_abandon: Callable[[], None] | None = None,
) -> Stream:
    """Run ``work`` on a thread and answer with its messages as JSON lines (see the module docstring).

    ``on_abandon`` is called if the client goes away first: noticed when a write fails, or, with
    ``connection``, while the work is quiet (the client closed its end). The work is then left to
    finish (or be stopped by ``on_abandon``) without an audience.
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            events.put(("end", work(lambda message: events.put(("message", message)))))
        except Exception as exc:  # reported to the client; a bug is logged too
            if not isinstance(exc, EngineError | APIError):
                _log.exception("%s failed", name)
            events.put(("error", exc))

    threading.Thread(target=run, name=name, daemon=True).start()
    first = events.get()
    if first[0] == "error":
        raise first[1]

    def next_event() -> tuple[str, Any] | None:
        while True:
            try:
                return events.get(timeout=_QUIET_CHECK)
            except queue.Empty:
                if connection is not None and client_gone(connection):
                    return None

    def chunks() -> Iterator[bytes]:
        finished = False
        try:
            event: tuple[str, Any] | None = first
            while event is not None:
                kind, value = event
                if kind == "message":
                    yield json.dumps(value).encode() + b"\n"
                elif kind == "end":
                    finished = True
                    yield b"".join(json.dumps(m).encode() + b"\n" for m in value)
                    return
                else:
                    finished = True
                    yield json.dumps(error_message(_describe(value))).encode() + b"\n"
                    return
                event = next_event()
        finally:
            if not finished and on_abandon is not None:
                on_abandon()

    return Stream(chunks())
