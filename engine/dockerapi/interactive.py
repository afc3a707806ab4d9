"""The seam for terminals and stdin: what the container endpoints hand over when a client wants them.

The container endpoints (:mod:`engine.dockerapi.containers`, :mod:`engine.dockerapi.execs`)
serve output-only streams themselves: ``docker run`` without ``-i``/``-t``, ``logs``, ``attach``
for output, non-TTY ``exec``. Anything that needs the container's terminal or its stdin comes
here: a create with ``Tty``/``OpenStdin`` (:func:`spec_fields`), an attach with ``stdin=1`` or
to a TTY container (:func:`attach`), an exec with ``Tty`` (:func:`exec_start`), a resize of a
TTY exec (:func:`exec_resize`). Until the terminal part fills these in, each answers with a
clear 400 (``docker run -it`` says what is missing) and nothing is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.dockerapi.create import CreateRequest
from engine.dockerapi.http import Answer, APIError, Request

if TYPE_CHECKING:
    from engine.dockerapi.execs import ExecInstance
    from engine.engine import Engine
    from engine.runtime.model import Container

_NOT_YET = "interactive containers (a TTY or stdin: -i/-t) are not served by this daemon yet"


def spec_fields(req: CreateRequest) -> dict[str, Any]:
    """Extra :class:`ContainerSpec` fields for a create asking for a TTY or an open stdin."""
    if req.tty or req.open_stdin:
        raise APIError(400, f"{_NOT_YET}; run without -i/-t (Tty and OpenStdin must be false)")
    return {}


def attach(engine: Engine, container: Container, request: Request) -> Answer:
    """``POST /containers/{id}/attach`` with ``stdin=1``, or to a container created with a TTY."""
    raise APIError(400, f"{_NOT_YET}; attach without stdin (stdin=0)")


def exec_start(engine: Engine, instance: ExecInstance, request: Request) -> Answer:
    """``POST /exec/{id}/start`` of an exec created with ``Tty``."""
    raise APIError(400, f"{_NOT_YET}; exec without -t")


def exec_resize(engine: Engine, instance: ExecInstance, rows: int, cols: int) -> None:
    """``POST /exec/{id}/resize`` of an exec created with ``Tty``."""
    raise APIError(400, f"{_NOT_YET}; a non-TTY exec has no size")
