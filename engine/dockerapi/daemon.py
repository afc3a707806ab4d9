"""The operator's Docker Engine API over one engine: every endpoint, wired onto a router.

``serve(engine, socket_path)`` is what ``hpctl docker serve`` (and ``make run``) runs. The
endpoints live in one module per resource (``system``, ``containers``, ...), each exposing
``register(router, engine)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.dockerapi import containers, system
from engine.dockerapi.http import Router, UnixServer

if TYPE_CHECKING:
    from engine.engine import Engine

DEFAULT_SOCKET = Path("/run/hostpanel/docker.sock")


def default_socket() -> Path:
    """The operator's socket: ``$HOSTPANEL_DOCKER_SOCKET``, else ``/run/hostpanel/docker.sock``."""
    return Path(os.environ.get("HOSTPANEL_DOCKER_SOCKET") or DEFAULT_SOCKET)


def operator_router(engine: Engine) -> Router:
    """Every endpoint the operator's socket serves, with operator rights over ``engine``."""
    router = Router()
    for module in (system, containers):
        module.register(router, engine)
    return router


def serve(engine: Engine, socket_path: Path = DEFAULT_SOCKET, *, verbose: bool = False) -> None:
    """Serve the operator's API on ``socket_path`` (root-only, mode 0600) until interrupted."""
    server = UnixServer(socket_path, operator_router(engine))
    server.verbose = verbose
    try:
        server.serve_forever()
    finally:
        server.server_close()
        socket_path.unlink(missing_ok=True)
