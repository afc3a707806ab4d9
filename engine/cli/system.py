"""Housekeeping commands: `hpctl system rotate-logs [--every SECONDS]`."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.cli import CliContext


def cmd_rotate_logs(ctx: CliContext, args: argparse.Namespace) -> int:
    """Rotate the logs of running containers that reached their max size, once or forever."""
    while True:
        rotated = ctx.engine.rotate_logs()
        if args.every is None:
            ctx.out.write(f"rotated {rotated} log file(s)\n")
            return 0
        time.sleep(args.every)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `system` commands to `hpctl`."""
    system = sub.add_parser("system", help="engine housekeeping")
    ssub = system.add_subparsers(dest="system_command", metavar="COMMAND")
    ssub.required = True
    p = ssub.add_parser("rotate-logs", help="rotate container logs over their max-size (keeps max-file)")
    p.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep running and rotate every SECONDS (what `make run` starts)",
    )
    p.set_defaults(handler=cmd_rotate_logs)
