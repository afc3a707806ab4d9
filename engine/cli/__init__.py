"""`hpctl`: the operator's command line, a thin layer over :class:`engine.Engine`.

Each submodule adds its commands with ``register(subparsers)``; a command's
handler takes ``(ctx, args)`` and returns the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError
from engine.paths import default_instance, default_root

if TYPE_CHECKING:
    from engine.engine import Engine

Handler = Callable[["CliContext", argparse.Namespace], int]


class CliContext:
    """What a command handler needs: the engine (made on first use) and the streams."""

    def __init__(self, root: Path, instance: str) -> None:
        self.root = root
        self.instance = instance
        self._engine: Engine | None = None
        self.out = sys.stdout
        self.err = sys.stderr

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from engine.engine import Engine

            self._engine = Engine(root=self.root, instance=self.instance)
        return self._engine


def build_parser() -> argparse.ArgumentParser:
    """The full `hpctl` argument parser with every command registered."""
    from engine.cli import containers, docker, host, images, networks, system

    parser = argparse.ArgumentParser(prog="hpctl", description="HostPanel container engine CLI")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="engine root directory (default: $HOSTPANEL_ROOT or /var/lib/hostpanel)",
    )
    parser.add_argument(
        "--instance", default=None, help="engine instance name (default: $HOSTPANEL_INSTANCE or 'hostpanel')"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (host, images, containers, networks, system, docker):
        module.register(sub)
    from engine.cli import stats, tenants

    stats.register(sub)
    tenants.register(sub)
    from engine.cli import volumes

    volumes.register(sub)
    from engine.cli import build

    build.register(sub)
    from engine.cli import registry

    registry.register(sub)
    from engine.cli import interactive

    interactive.register(sub)
    from engine.cli import control, events

    control.register(sub)
    events.register(sub)
    from engine.cli import compose

    compose.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hpctl`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = CliContext(root=args.root or default_root(), instance=args.instance or default_instance())
    handler: Handler = args.handler
    try:
        return handler(ctx, args)
    except EngineError as exc:
        print(f"hpctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
