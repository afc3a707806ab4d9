"""`hpctl docker serve`: the Docker Engine API on the operator's unix socket."""

from __future__ import annotations

import argparse
import contextlib
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.cli import CliContext


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `docker` commands to `hpctl`."""
    from engine.dockerapi import default_socket

    docker = sub.add_parser("docker", help="the Docker Engine API (the stock docker CLI drives this engine)")
    dsub = docker.add_subparsers(dest="docker_command", metavar="COMMAND")
    dsub.required = True
    p = dsub.add_parser(
        "serve",
        help="serve the Docker Engine API on a root-only unix socket (operator rights; `make run` starts it)",
    )
    p.add_argument(
        "--socket",
        type=Path,
        default=default_socket(),
        help="socket path (default: $HOSTPANEL_DOCKER_SOCKET, else /run/hostpanel/docker.sock)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(ctx: CliContext, args: argparse.Namespace) -> int:
    """Serve until interrupted; prints the DOCKER_HOST to use."""
    from engine.dockerapi.daemon import serve

    engine = ctx.engine
    print(
        f"Docker Engine API for engine {engine.instance!r}: DOCKER_HOST=unix://{args.socket}",
        file=ctx.out,
        flush=True,
    )
    # `make stop` sends SIGTERM: leave through serve()'s clean-up (the socket goes) as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        serve(engine, args.socket, verbose=args.verbose)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
