"""The seam for terminals and stdin: what the container endpoints hand over when a client wants them.

The container endpoints (:mod:`engine.dockerapi.containers`, :mod:`engine.dockerapi.execs`)
serve output-only streams themselves: ``docker run`` without ``-i``/``-t``, ``logs``, ``attach``
for output, non-TTY ``exec``. Anything that needs the container's terminal or its stdin comes
here: a create with ``Tty``/``OpenStdin`` (:func:`spec_fields`), an attach with ``stdin=1`` or
to a TTY container (:func:`attach`, served by :mod:`engine.dockerapi.attach`), an exec with
``Tty`` (:func:`exec_start`) and its resize (:func:`exec_resize`), served by
:mod:`engine.dockerapi.ptyexec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.dockerapi import ptyexec
from engine.dockerapi.attach import attach_hijack
from engine.dockerapi.create import CreateRequest
from engine.dockerapi.http import Answer, Request

if TYPE_CHECKING:
    from engine.dockerapi.execs import ExecInstance
    from engine.engine import Engine
    from engine.runtime.model import Container


def spec_fields(req: CreateRequest) -> dict[str, Any]:
    """Extra :class:`ContainerSpec` fields for a create asking for a TTY or an open stdin."""
    return {"tty": req.tty, "open_stdin": req.open_stdin, "stdin_once": req.open_stdin and req.stdin_once}


def attach(engine: Engine, container: Container, request: Request) -> Answer:
    """``POST /containers/{id}/attach`` with ``stdin=1``, or to a container created with a TTY."""
    return attach_hijack(engine, container, request)


def exec_start(engine: Engine, instance: ExecInstance, request: Request) -> Answer:
    """``POST /exec/{id}/start`` of an exec created with ``Tty``."""
    return ptyexec.start(engine, instance, request)


def exec_resize(engine: Engine, instance: ExecInstance, rows: int, cols: int) -> None:
    """``POST /exec/{id}/resize`` of an exec created with ``Tty``."""
    ptyexec.resize(instance, rows, cols)
