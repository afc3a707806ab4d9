"""Relays between a hijacked API connection and an interactive process (attach, exec with a TTY).

The client's bytes after the HTTP headers are the process's stdin; what the process writes goes
back raw when it has a terminal and in multiplexed frames (:func:`engine.dockerapi.http.frame`)
otherwise. stdin is read on its own thread (the connection's buffered reader may already hold
the first keystrokes), output on the caller's. The detach key sequence (ctrl-p ctrl-q unless the
client names others) ends the relay without touching the process; the client closing its write
side ends stdin (:meth:`Endpoint.close_stdin`). The relay returns once the output has ended
(the process exited), the client detached, or the connection broke.

The process side is the small :class:`Endpoint` protocol, so unit tests relay over socketpairs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import IO, Protocol

from engine.dockerapi.http import STDERR, STDOUT, frame
from engine.runtime.attach import DetachScanner

_STREAM_IDS = {"stdout": STDOUT, "stderr": STDERR}


class Endpoint(Protocol):
    """The process side of a relay."""

    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """(stream name, data); ('', b'') at the end; None after ``timeout`` without output."""
        ...

    def write(self, data: bytes) -> None:
        """Send to the process's stdin."""
        ...

    def close_stdin(self) -> None:
        """End of input."""
        ...


def relay(
    endpoint: Endpoint,
    rfile: IO[bytes],
    sock: socket.socket,
    *,
    raw: bool,
    stdin: bool,
    stdout: bool = True,
    stderr: bool = True,
    detach_keys: bytes = b"\x10\x11",
    before_close: Callable[[str], None] | None = None,
    first_output_delay: float = 0.0,
) -> str:
    """Relay until the end; returns why it ended: 'exited', 'detached' or 'disconnected'.

    ``raw``: write output as it comes (a terminal); else as multiplexed frames. ``stdin``:
    forward the client's bytes to the process. ``stdout``/``stderr``: which output to send.
    ``before_close`` gets the reason before the connection is closed (record an exit code
    there: the client asks for it as soon as its stream ends). ``first_output_delay`` holds the
    first output back that long after the headers, for a process that started before them
    (docker-py reads the upgrade's headers through a buffered reader and then reads the raw
    socket: output arriving together with the headers would be lost to it).
    """
    done = threading.Event()
    reason: list[str] = []

    def finish(why: str) -> None:
        if not done.is_set():
            reason.append(why)
            done.set()

    def pump_stdin() -> None:
        scanner = DetachScanner(detach_keys)
        try:
            while not done.is_set():
                data = _read_some(rfile)
                if not data:
                    rest = scanner.flush()
                    if rest:
                        endpoint.write(rest)
                    endpoint.close_stdin()
                    return
                forward, detach = scanner.feed(data)
                if forward:
                    endpoint.write(forward)
                if detach:
                    finish("detached")
                    return
        except Exception:  # the process or the client went away: the output side decides
            return

    if stdin:
        threading.Thread(target=pump_stdin, name="docker-api-stdin", daemon=True).start()
    if first_output_delay > 0:
        done.wait(first_output_delay)
    try:
        while not done.is_set():
            got = endpoint.read(timeout=0.2)
            if got is None:
                continue
            stream, data = got
            if not data:
                finish("exited")
                break
            if (stream == "stderr" and not stderr) or (stream != "stderr" and not stdout):
                continue
            sock.sendall(data if raw else frame(_STREAM_IDS.get(stream, STDOUT), data))
    except OSError:
        finish("disconnected")
    finish("exited")
    if before_close is not None:
        before_close(reason[0])
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # unblocks the stdin thread's read
    return reason[0]


def _read_some(rfile: IO[bytes]) -> bytes:
    """Whatever the client sent next (what is buffered first), b'' at its end or on an error."""
    try:
        read1 = getattr(rfile, "read1", None)
        return bytes(read1(65536)) if read1 is not None else rfile.read(1)
    except (OSError, ValueError):
        return b""
