"""Housekeeping commands: `hpctl system monitor --every SECONDS` and `hpctl system rotate-logs`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from engine.errors import EngineError, InvalidSpec

if TYPE_CHECKING:
    from engine.cli import CliContext


def cmd_rotate_logs(ctx: CliContext, args: argparse.Namespace) -> int:
    """Rotate the logs of running containers that reached their max size, once."""
    rotated = ctx.engine.rotate_logs()
    ctx.out.write(f"rotated {rotated} log file(s)\n")
    return 0


def cmd_monitor(ctx: CliContext, args: argparse.Namespace) -> int:
    """Every SECONDS: rotate full logs and sample usage for billing; with --once, one round.

    A failed round is reported on stderr and the loop goes on: a monitor that
    stops on the first hiccup stops metering.
    """
    if args.every <= 0:
        raise InvalidSpec("--every must be more than 0 seconds")
    while True:
        started = time.monotonic()
        try:
            rotated = ctx.engine.rotate_logs()
            sampled = ctx.engine.sample_usage()
            if args.once or args.verbose:
                ctx.out.write(f"rotated {rotated} log file(s), sampled {sampled} container(s)\n")
                ctx.out.flush()
        except EngineError as exc:
            if args.once:
                raise
            print(f"hpctl system monitor: {exc}", file=sys.stderr)
        if args.once:
            return 0
        time.sleep(max(args.every - (time.monotonic() - started), 0.0))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `system` commands to `hpctl`."""
    system = sub.add_parser("system", help="engine housekeeping")
    ssub = system.add_subparsers(dest="system_command", metavar="COMMAND")
    ssub.required = True
    p = ssub.add_parser(
        "monitor",
        help="rotate container logs and sample usage for billing, every SECONDS (what `make run` starts)",
    )
    p.add_argument("--every", type=float, default=10.0, metavar="SECONDS", help="seconds between rounds")
    p.add_argument("--once", action="store_true", help="one round, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line per round")
    p.set_defaults(handler=cmd_monitor)
    p = ssub.add_parser("rotate-logs", help="rotate container logs over their max-size once (keeps max-file)")
    p.set_defaults(handler=cmd_rotate_logs)
