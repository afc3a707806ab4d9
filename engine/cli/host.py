"""`hpctl host setup` and `hpctl host info`: provisioning and inspecting this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.output import print_json
from engine.host.provision import setup_host
from engine.host.status import host_info
from engine.paths import validate_instance

if TYPE_CHECKING:
    from engine.cli import CliContext


def _add_common(p: argparse.ArgumentParser) -> None:
    # Also accepted after the command; SUPPRESS keeps a value given before it
    # (`hpctl --root X host info`), and main() builds the context from either.
    p.add_argument("--root", type=Path, default=argparse.SUPPRESS, help="engine root directory")
    p.add_argument("--instance", default=argparse.SUPPRESS, help="engine instance name")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers: Any) -> None:
    """Add the `host` command group."""
    host = subparsers.add_parser("host", help="provision and inspect this host")
    hsub = host.add_subparsers(dest="host_command", metavar="SUBCOMMAND")
    hsub.required = True

    setup = hsub.add_parser(
        "setup",
        help="install packages, fix cgroups, enable forwarding, create the engine root (idempotent)",
    )
    _add_common(setup)
    setup.add_argument("--packages", action="store_true", help="only install the missing apt packages")
    setup.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    setup.add_argument("--no-smoke", action="store_true", help="skip running a throw-away container")
    setup.set_defaults(handler=cmd_setup)

    info = hsub.add_parser("info", help="kernel, cgroup layout, runtime versions, engine root")
    _add_common(info)
    info.set_defaults(handler=cmd_info)


def cmd_setup(ctx: CliContext, args: argparse.Namespace) -> int:
    """Provision this host; print each change, then a summary."""
    root = ctx.root
    instance = validate_instance(ctx.instance)
    quiet = bool(args.json)

    def log(line: str) -> None:
        if not quiet:
            ctx.out.write(line + "\n")

    report = setup_host(
        root,
        instance,
        dry_run=args.dry_run,
        packages_only=args.packages,
        smoke=not args.no_smoke,
        log=log,
    )
    if args.json:
        print_json(ctx.out, report.to_dict())
        return 0
    if args.dry_run:
        if report.actions:
            ctx.out.write("would change:\n")
            for a in report.actions:
                ctx.out.write(f"- {a.description}\n")
                if a.command:
                    ctx.out.write(f"    $ {' '.join(a.command)}\n")
                if a.write is not None:
                    ctx.out.write(f"    $ echo {a.write[1]!r} > {a.write[0]}\n")
        else:
            ctx.out.write("nothing to change\n")
    for note in report.notes:
        ctx.out.write(f"note: {note}\n")
    if args.packages:
        if not args.dry_run:
            ctx.out.write("packages: " + ("installed\n" if report.changed else "all present\n"))
        return 0
    layout = report.layout
    ctx.out.write(f"cgroups: {layout.mode} (v{layout.version})\n")
    if report.binaries is not None:
        b = report.binaries
        ctx.out.write(f"runtime: crun {b.crun}, conmon {b.conmon}, init {b.init}\n")
    if report.smoke_seconds is not None:
        ctx.out.write(f"smoke test: crun ran a container in {report.smoke_seconds * 1000:.0f} ms\n")
    if not args.dry_run:
        ctx.out.write(f"engine root: {root} (instance {instance})\n")
        ctx.out.write("host ready" + (" (changed)" if report.changed else " (nothing to change)") + "\n")
    return 0


def cmd_info(ctx: CliContext, args: argparse.Namespace) -> int:
    """Print what this host has."""
    root = ctx.root
    instance = validate_instance(ctx.instance)
    info = host_info(root, instance)
    if args.json:
        print_json(ctx.out, info)
        return 0
    w = ctx.out.write
    w(f"kernel:       {info['kernel']} ({info['machine']})\n")
    cg = info["cgroup"]
    if cg is None:
        w(f"cgroups:      unusable: {info['cgroup_error']}\n")
    else:
        w(f"cgroups:      {cg['mode']} (v{cg['version']})\n")
        if cg["v1_mounts"]:
            w(f"  v1:         {', '.join(sorted(cg['v1_mounts']))}\n")
        if cg["v2_mount"]:
            w(f"  v2:         {cg['v2_mount']} controllers: {', '.join(cg['v2_controllers']) or '-'}\n")
        if cg["controllers_only_on_v2"]:
            w(
                "  problem:    crun refuses containers until `hpctl host setup` moves "
                f"{', '.join(cg['controllers_only_on_v2'])} to v1\n"
            )
    w(f"crun:         {info['crun']['version'] or 'missing'}\n")
    w(f"conmon:       {info['conmon']['version'] or 'missing'}\n")
    w(f"init:         {info['init'] or 'missing'}\n")
    w(f"ip_forward:   {'on' if info['ip_forward'] else 'off'}\n")
    eng = info["engine"]
    w(f"engine root:  {eng['root']} ({'ready' if eng['ready'] else 'not set up: run hpctl host setup'})\n")
    w(f"instance:     {eng['instance']}\n")
    return 0
