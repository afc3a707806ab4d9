"""Network commands: `hpctl network create | ensure-overlay | remote | connect | disconnect | ls | inspect |
rm | protect | teardown`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from engine.cli.output import print_json, print_table
from engine.errors import InvalidSpec
from engine.networks.manager import OverlayOptions
from engine.networks.model import NetworkJoin, RemoteEndpoint

if TYPE_CHECKING:
    from engine.cli import CliContext


def cmd_create(ctx: CliContext, args: argparse.Namespace) -> int:
    """Create a network and print its name."""
    overlay = OverlayOptions(
        peers=tuple(args.peer), underlay_ip=args.underlay_ip, vni=args.vni, ip_range=args.ip_range
    )
    net = ctx.engine.network_create(
        args.name,
        tenant=args.tenant,
        subnet=args.subnet,
        driver=args.driver,
        internal=args.internal,
        overlay=overlay,
    )
    ctx.out.write(net.name + "\n")
    return 0


def cmd_ls(ctx: CliContext, args: argparse.Namespace) -> int:
    """List networks."""
    networks = ctx.engine.network_list(args.tenant)
    if args.json:
        print_json(ctx.out, [n.to_dict() for n in networks])
        return 0
    rows = [
        [n.name, n.tenant, n.driver, n.subnet, n.gateway, "yes" if n.internal else "no", n.bridge]
        for n in networks
    ]
    print_table(ctx.out, ["NAME", "TENANT", "DRIVER", "SUBNET", "GATEWAY", "INTERNAL", "DEVICE"], rows)
    return 0


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    """Print networks and their containers as JSON."""
    result: list[dict[str, Any]] = []
    for name in args.names:
        data = ctx.engine.network(name).to_dict()
        data["containers"] = {
            cid: {k: v for k, v in ep.items() if k != "hosts"}
            for cid, ep in ctx.engine.networks.endpoints(name).items()
        }
        result.append(data)
    print_json(ctx.out, result)
    return 0


def cmd_ensure_overlay(ctx: CliContext, args: argparse.Namespace) -> int:
    """Create an overlay network or bring it to these settings in place; print its name."""
    net = ctx.engine.network_ensure_overlay(
        args.name,
        tenant=args.tenant,
        subnet=args.subnet,
        vni=args.vni,
        peers=args.peer,
        underlay_ip=args.underlay_ip,
        ip_range=args.ip_range,
    )
    ctx.out.write(net.name + "\n")
    return 0


def parse_remote_entry(item: str) -> RemoteEndpoint:
    """A `network remote` entry: ``NAME[,ALIAS...]=ADDRESS``; InvalidSpec for another shape."""
    names, sep, address = item.partition("=")
    if not sep or not names or not address:
        raise InvalidSpec(f"invalid entry {item!r}: use NAME=ADDRESS or NAME,ALIAS=ADDRESS")
    name, *aliases = names.split(",")
    return RemoteEndpoint(name, address, tuple(aliases))


def cmd_remote(ctx: CliContext, args: argparse.Namespace) -> int:
    """Set the containers an overlay network has on other hosts (a name may come once per replica)."""
    ctx.engine.network_set_remote(args.name, [parse_remote_entry(e) for e in args.entries])
    return 0


def cmd_connect(ctx: CliContext, args: argparse.Namespace) -> int:
    """Join a container to one more network, live."""
    ctx.engine.connect(args.container, NetworkJoin(args.network, tuple(args.alias)))
    return 0


def cmd_disconnect(ctx: CliContext, args: argparse.Namespace) -> int:
    """Take a container off a network, live."""
    ctx.engine.disconnect(args.container, args.network)
    return 0


def cmd_rm(ctx: CliContext, args: argparse.Namespace) -> int:
    """Remove unused networks."""
    for name in args.names:
        ctx.engine.network_remove(name)
        ctx.out.write(name + "\n")
    return 0


def cmd_protect(ctx: CliContext, args: argparse.Namespace) -> int:
    """Replace the protected hosts (ADDRESS or ADDRESS=PORT/PROTO,...) and print them."""
    entries: dict[str, list[str]] = {}
    for item in args.entries:
        address, _, ports = item.partition("=")
        entries[address] = [p for p in ports.split(",") if p]
    _show_protected(ctx, ctx.engine.set_egress_protected(entries), args.json)
    return 0


def cmd_protected(ctx: CliContext, args: argparse.Namespace) -> int:
    """Print the protected hosts and the ports they keep open."""
    _show_protected(ctx, ctx.engine.egress_protected(), args.json)
    return 0


def _show_protected(ctx: CliContext, hosts: dict[str, tuple[str, ...]], as_json: bool) -> None:
    if as_json:
        print_json(ctx.out, {a: list(p) for a, p in hosts.items()})
        return
    print_table(
        ctx.out,
        ["PROTECTED HOST", "OPEN TO CONTAINERS"],
        [[a, ", ".join(p) or "-"] for a, p in hosts.items()],
    )


def cmd_teardown(ctx: CliContext, args: argparse.Namespace) -> int:
    """Remove every namespace, link and nft table of this engine instance."""
    for item in ctx.engine.network_teardown():
        ctx.out.write(f"removed {item}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `network` command group."""
    net = sub.add_parser("network", help="manage tenant networks")
    nsub = net.add_subparsers(dest="network_command", metavar="SUBCOMMAND")
    nsub.required = True

    p = nsub.add_parser("create", help="create a network")
    p.add_argument("name")
    p.add_argument("--tenant", default="default", help="tenant that owns the network")
    p.add_argument("--subnet", help="IPv4 subnet in CIDR form (default: the next free /24 of the pool)")
    p.add_argument("--driver", default="bridge", choices=("bridge", "overlay"))
    p.add_argument("--internal", action="store_true", help="no outbound route and no masquerade")
    p.add_argument(
        "--peer", action="append", default=[], metavar="IP", help="overlay: another host's address"
    )
    p.add_argument("--underlay-ip", help="overlay: this host's address (default: the route's source)")
    p.add_argument("--vni", type=int, help="overlay: VXLAN network id (default: derived from the name)")
    p.add_argument("--ip-range", help="overlay: the part of the subnet this host hands out, e.g. x.y.z.0/25")
    p.set_defaults(handler=cmd_create)

    p = nsub.add_parser(
        "ensure-overlay", help="create an overlay network, or update its peers/--ip-range in place"
    )
    p.add_argument("name")
    p.add_argument("--tenant", required=True, help="tenant that owns the network")
    p.add_argument("--subnet", required=True, help="IPv4 subnet in CIDR form (the same on every host)")
    p.add_argument("--vni", type=int, required=True, help="VXLAN network id (the same on every host)")
    p.add_argument("--peer", action="append", default=[], metavar="IP", help="another host's address")
    p.add_argument("--underlay-ip", help="this host's address (default: the route's source)")
    p.add_argument("--ip-range", help="the part of the subnet this host hands out, e.g. x.y.z.0/25")
    p.set_defaults(handler=cmd_ensure_overlay)

    p = nsub.add_parser(
        "remote",
        help="overlay: containers on other hosts as NAME[,ALIAS...]=ADDRESS, one per replica",
    )
    p.add_argument("name")
    p.add_argument("entries", nargs="*")
    p.set_defaults(handler=cmd_remote)

    p = nsub.add_parser("connect", help="join a container to one more network, live")
    p.add_argument("network")
    p.add_argument("container")
    p.add_argument("--alias", action="append", default=[], help="extra name on that network")
    p.set_defaults(handler=cmd_connect)

    p = nsub.add_parser("disconnect", help="take a container off a network, live")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(handler=cmd_disconnect)

    p = nsub.add_parser("ls", help="list networks")
    p.add_argument("--tenant", help="only this tenant's networks")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(handler=cmd_ls)

    p = nsub.add_parser("inspect", help="show networks and their containers as JSON")
    p.add_argument("names", nargs="+")
    p.set_defaults(handler=cmd_inspect)

    p = nsub.add_parser("rm", help="remove networks (refused while a container uses one)")
    p.add_argument("names", nargs="+")
    p.set_defaults(handler=cmd_rm)

    p = nsub.add_parser(
        "protect",
        help="replace the protected hosts (panel, Redis, database, other hosts): containers reach them only "
        "on the ports given, as ADDRESS[=PORT/PROTO,...] (none: no protected host)",
    )
    p.add_argument("entries", nargs="*", metavar="ADDRESS[=PORT/PROTO,...]")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(handler=cmd_protect)

    p = nsub.add_parser("protected", help="show the protected hosts and their open ports")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(handler=cmd_protected)

    p = nsub.add_parser(
        "teardown", help="remove this instance's network namespaces, bridges, veths and nft tables"
    )
    p.set_defaults(handler=cmd_teardown)
