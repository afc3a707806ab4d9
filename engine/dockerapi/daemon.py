"""The operator's Docker Engine API over one engine: every endpoint, wired onto a router.

``serve(engine, socket_path)`` is what ``hpctl docker serve`` (and ``make run``) runs. The
endpoints live in one module per resource (``system``, ``containers``, ...), each exposing
``register(router, engine)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.dockerapi import (
    DEFAULT_SOCKET,
    attach,
    build,
    cli,
    container_copy,
    containers,
    control,
    default_socket,
    df,
    events,
    image_archives,
    images,
    networks,
    stats,
    system,
    transfer,
    volumes,
)
from engine.dockerapi.http import Router, UnixServer

if TYPE_CHECKING:
    from engine.engine import Engine

__all__ = ["DEFAULT_SOCKET", "default_socket", "operator_router", "serve"]


def operator_router(engine: Engine) -> Router:
    """Every endpoint the operator's socket serves, with operator rights over ``engine``."""
    router = Router()
    for module in (
        *(system, containers, attach, container_copy, control, stats, events),
        *(images, image_archives, transfer, build, volumes, networks, df, cli),
    ):
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
