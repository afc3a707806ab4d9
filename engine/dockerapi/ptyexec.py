"""``docker exec -t``: an exec on its own terminal (:mod:`engine.runtime.pty_exec`) relayed raw.

``/exec/{id}/start`` of an exec created with ``Tty`` starts the process on a new terminal
(``ConsoleSize`` from the start body, else 24x80), then hijacks the connection and relays it
(:func:`engine.dockerapi.streams.relay`) until the process exits. ``/exec/{id}/resize`` changes
the terminal's size. When the client detaches or disconnects first, the process keeps running
and is reaped (its exit code recorded) when it ends; with ``Detach`` the start answers at once.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from typing import IO, TYPE_CHECKING, Any

from engine.dockerapi.attach import RAW_STREAM
from engine.dockerapi.http import APIError, Hijack, Request, Response
from engine.dockerapi.streams import relay
from engine.errors import CommandNotFound, InvalidSpec
from engine.runtime.attach import parse_detach_keys
from engine.runtime.model import ExecSpec
from engine.runtime.pty_exec import PtySession

if TYPE_CHECKING:
    from engine.dockerapi.execs import ExecInstance
    from engine.engine import Engine

DEFAULT_SIZE = (24, 80)
# The process runs before the 101 answer is sent (so a missing command is an HTTP error); its
# first output waits this long so clients that switch from a buffered reader to the raw socket
# after the headers (docker-py) do not lose it. dockerd starts the process after the answer.
FIRST_OUTPUT_DELAY_SECONDS = 0.05

_sessions: dict[str, PtySession] = {}
_lock = threading.Lock()


class PtyEndpoint:
    """A :class:`PtySession` as a relay endpoint: everything is stdout; no separate end of input
    (on a terminal the client's ctrl-D is just a byte)."""

    def __init__(self, session: PtySession) -> None:
        self.session = session

    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        data = self.session.read(timeout=timeout)
        if data is None:
            return None
        return ("", b"") if not data else ("stdout", data)

    def write(self, data: bytes) -> None:
        self.session.write(data)

    def close_stdin(self) -> None:
        return None


def console_size(body: Any) -> tuple[int, int]:
    """``ConsoleSize`` ([rows, cols]) of a start body, or 24x80; a 400 for a malformed one."""
    size = body.get("ConsoleSize") if isinstance(body, dict) else None
    if size in (None, [], [0, 0]):
        return DEFAULT_SIZE
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) for n in size)):
        raise APIError(400, "invalid ConsoleSize: expected [rows, columns]")
    return size[0], size[1]


def with_term(spec: ExecSpec) -> ExecSpec:
    """``spec`` with ``TERM=xterm`` unless it names a TERM itself (dockerd's default on a TTY)."""
    if any(item.startswith("TERM=") for item in spec.env):
        return spec
    return dataclasses.replace(spec, env=("TERM=xterm", *spec.env))


def _finish(instance: ExecInstance, session: PtySession) -> None:
    """Wait for the process, record its exit code and free the terminal."""
    session.wait()
    instance.exit_code = session.close()
    instance.running = False
    with _lock:
        _sessions.pop(instance.id, None)


def start(engine: Engine, instance: ExecInstance, request: Request) -> Response | Hijack:
    """Start a TTY exec (see module doc). 409 when the container does not run."""
    body = request.json()
    rows, cols = console_size(body)
    detach_keys = parse_detach_keys(instance.detach_keys or request.arg("detachKeys"))
    container = engine.get(instance.container_id)
    if container.status != "running":
        raise APIError(409, f"container {container.id} is not running")
    instance.started = True
    try:
        session = engine.exec_pty(container.id, with_term(instance.spec), rows=rows, cols=cols)
    except CommandNotFound as exc:
        instance.started = False
        raise APIError(400, f"OCI runtime exec failed: {exc.message}") from None
    except InvalidSpec as exc:
        instance.started = False
        raise APIError(400, exc.message) from None
    instance.running, instance.pid = True, session.pid
    with _lock:
        _sessions[instance.id] = session
    if isinstance(body, dict) and body.get("Detach"):
        threading.Thread(target=_finish, args=(instance, session), daemon=True).start()
        return Response(status=200, body=b"", content_type="")

    def ended(why: str) -> None:
        if why == "exited":
            _finish(instance, session)
        else:  # detached or gone: the process keeps running; reap it when it ends
            threading.Thread(target=_finish, args=(instance, session), daemon=True).start()

    def run(rfile: IO[bytes], sock: socket.socket) -> None:
        relay(
            PtyEndpoint(session),
            rfile,
            sock,
            raw=True,
            stdin=instance.attach_stdin,
            detach_keys=detach_keys,
            before_close=ended,
            first_output_delay=FIRST_OUTPUT_DELAY_SECONDS,
        )

    return Hijack(run, content_type=RAW_STREAM)


def resize(instance: ExecInstance, rows: int, cols: int) -> None:
    """Resize a started TTY exec's terminal (400 for an impossible size; a finished one is a no-op)."""
    with _lock:
        session = _sessions.get(instance.id)
    if session is None:
        return
    try:
        session.resize(rows, cols)
    except InvalidSpec as exc:
        raise APIError(400, exc.message) from None
