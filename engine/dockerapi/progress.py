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
import threading
from collections.abc import Callable, Iterator
from typing import Any

from engine.dockerapi.http import APIError, Stream
from engine.errors import EngineError

_log = logging.getLogger(__name__)

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


def streamed(work: Work, *, name: str = "docker-api-progress") -> Stream:
    """Run ``work`` on a thread and answer with its messages as JSON lines (see the module docstring)."""
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

    def chunks() -> Iterator[bytes]:
        kind, value = first
        while True:
            if kind == "message":
                yield json.dumps(value).encode() + b"\n"
            elif kind == "end":
                yield b"".join(json.dumps(m).encode() + b"\n" for m in value)
                return
            else:
                yield json.dumps(error_message(_describe(value))).encode() + b"\n"
                return
            kind, value = events.get()

    return Stream(chunks())
