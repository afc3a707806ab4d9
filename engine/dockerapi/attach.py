"""Interactive containers: attach with stdin or to a TTY, and ``POST /containers/{id}/resize``.

Attach hijacks the connection (101 UPGRADED when the client asks to upgrade) and relays it to
the container's main process through conmon's attach socket (:mod:`engine.runtime.attach`):
a raw stream when the container has a terminal, multiplexed frames otherwise. stdin is
forwarded when the client asks for it and the container was created with ``OpenStdin``. The
container keeps running when the client detaches (ctrl-p ctrl-q, or ``detachKeys``).
"""

from __future__ import annotations

import socket
from typing import IO, TYPE_CHECKING

from engine.dockerapi.http import (
    STDERR,
    STDOUT,
    APIError,
    Hijack,
    Request,
    Response,
    Router,
    frame,
    no_content,
)
from engine.dockerapi.lifecycle import find_container
from engine.dockerapi.streams import relay
from engine.errors import InvalidSpec
from engine.runtime.attach import parse_detach_keys
from engine.runtime.model import Container

if TYPE_CHECKING:
    from engine.engine import Engine

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


def terminal_size(request: Request) -> tuple[int, int]:
    """``h`` and ``w`` of a resize request; a 400 naming what is missing or impossible."""
    rows, cols = request.int_arg("h"), request.int_arg("w")
    if rows is None or cols is None:
        raise APIError(400, "resize needs both h (rows) and w (columns), e.g. ?h=24&w=80")
    return rows, cols


def detach_keys_of(request: Request) -> bytes:
    """The ``detachKeys`` parameter as bytes (400 for a bad one)."""
    try:
        return parse_detach_keys(request.arg("detachKeys"))
    except InvalidSpec as exc:
        raise APIError(400, exc.message) from None


def attach_hijack(engine: Engine, container: Container, request: Request) -> Hijack:
    """``POST /containers/{id}/attach`` to a container with a TTY or with stdin (see module doc)."""
    detach_keys = detach_keys_of(request)
    want_stdin = request.flag("stdin") and container.open_stdin
    stdout, stderr = request.flag("stdout"), request.flag("stderr")
    if not request.flag("stream") and not request.flag("logs"):
        raise APIError(400, "attach needs stream=1 (live output) or logs=1 (past output)")
    past = _past_output(engine, container) if request.flag("logs") else []
    session = engine.attach(container.id) if request.flag("stream") else None

    def run(rfile: IO[bytes], sock: socket.socket) -> None:
        for stream, data in past:
            if (stream == "stderr" and stderr) or (stream != "stderr" and stdout):
                sock.sendall(data if container.tty else frame(STDERR if stream == "stderr" else STDOUT, data))
        if session is None:
            return
        with session:
            relay(
                session,
                rfile,
                sock,
                raw=container.tty,
                stdin=want_stdin,
                stdout=stdout,
                stderr=stderr,
                detach_keys=detach_keys,
            )

    return Hijack(run, content_type=RAW_STREAM if container.tty else MULTIPLEXED_STREAM)


def register(router: Router, engine: Engine) -> None:
    """Add ``POST /containers/{id}/resize`` for ``engine``'s containers to ``router`` (attach itself
    is routed by :mod:`engine.dockerapi.containers` through :mod:`engine.dockerapi.interactive`)."""

    @router.route("POST", "/containers/{id}/resize")
    def resize(request: Request) -> Response:
        container = find_container(engine, request.params["id"])
        rows, cols = terminal_size(request)
        engine.resize(container.id, rows, cols)
        return no_content(200)


def _past_output(engine: Engine, container: Container) -> list[tuple[str, bytes]]:
    """The container's logged output (``logs=1``), line by line with its stream."""
    return [(line.stream, (line.text + "\n").encode()) for line in engine.logs(container.id)]
