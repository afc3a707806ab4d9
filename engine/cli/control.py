"""Container commands that act on a running container: pause, unpause, rename, top, port."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from engine.cli.output import print_table
from engine.errors import InvalidSpec
from engine.networks.model import PortMapping
from engine.runtime.procfs import TOP_TITLES

if TYPE_CHECKING:
    from engine.cli import CliContext


def cmd_pause(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.cli.containers import _each

    return _each(ctx, args.containers, ctx.engine.pause)


def cmd_unpause(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.cli.containers import _each

    return _each(ctx, args.containers, ctx.engine.unpause)


def cmd_rename(ctx: CliContext, args: argparse.Namespace) -> int:
    ctx.engine.rename(args.container, args.new_name)
    return 0


def cmd_top(ctx: CliContext, args: argparse.Namespace) -> int:
    rows = ctx.engine.top(args.container)
    print_table(ctx.out, TOP_TITLES, [r.columns() for r in rows])
    return 0


def port_lines(ports: list[dict[str, Any]], wanted: str | None = None) -> list[str]:
    """`docker port` lines ('80/tcp -> 0.0.0.0:8080') of a container's published ports.

    ``wanted`` ('80' or '80/udp') keeps that container port only, printing just the host side.
    """
    if wanted is not None:
        number, _, proto = wanted.partition("/")
        if not number.isdigit() or proto not in ("", "tcp", "udp"):
            raise InvalidSpec(f"invalid port {wanted!r}: use PORT or PORT/tcp or PORT/udp")
    lines = []
    for mapping in map(PortMapping.from_dict, ports):
        key = f"{mapping.container_port}/{mapping.protocol}"
        host = f"{mapping.host_ip}:{mapping.host_port}"
        if wanted is None:
            lines.append(f"{key} -> {host}")
        elif key == (wanted if "/" in wanted else f"{wanted}/tcp"):
            lines.append(host)
    return lines


def cmd_port(ctx: CliContext, args: argparse.Namespace) -> int:
    container = ctx.engine.get(args.container)
    lines = port_lines(container.ports, args.port)
    if args.port is not None and not lines:
        raise InvalidSpec(f"no public port {args.port!r} published for {container.name}")
    for line in lines:
        ctx.out.write(line + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add pause, unpause, rename, top and port to `hpctl`."""
    p = sub.add_parser("pause", help="freeze every process of containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_pause)

    p = sub.add_parser("unpause", help="thaw paused containers")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_unpause)

    p = sub.add_parser("rename", help="rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    p.set_defaults(handler=cmd_rename)

    p = sub.add_parser("top", help="show a container's processes (host pids)")
    p.add_argument("container")
    p.set_defaults(handler=cmd_top)

    p = sub.add_parser("port", help="show a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?", help="PORT[/PROTO] to show the host side of")
    p.set_defaults(handler=cmd_port)
