"""`hpctl events` (what changed, live) and `hpctl version`."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import subprocess
import time
from typing import TYPE_CHECKING

from engine.cli.output import print_json
from engine.events import Event, EventFilter, format_event_time, parse_event_time
from engine.runtime.procfs import printable

if TYPE_CHECKING:
    from engine.cli import CliContext


def event_line(event: Event) -> str:
    """One event as `docker events` prints it: time, type, action, id, (attributes).

    Labels and exec commands come from tenants: control characters are shown as '?'.
    """
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
    tail = f" ({attrs})" if attrs else ""
    return printable(f"{format_event_time(event.time_nano)} {event.type} {event.action} {event.id}{tail}")


def cmd_events(ctx: CliContext, args: argparse.Namespace) -> int:
    """Print recorded events from --since (default: only new ones) and follow until --until."""
    event_filter = EventFilter.from_args(args.filter)
    until = parse_event_time(args.until) if args.until else None
    if args.since:
        since: int | None = parse_event_time(args.since)
    else:
        since = None if until is not None else time.time_ns()
    for event in ctx.engine.events(event_filter, since=since, until=until, follow=True, tenant=args.tenant):
        if args.json:
            ctx.out.write(json.dumps(event.to_dict()) + "\n")
        else:
            ctx.out.write(event_line(event) + "\n")
        ctx.out.flush()
    return 0


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def version_info(ctx: CliContext) -> dict[str, dict[str, str]]:
    """hpctl's version and the engine's: its version, API versions and runtimes."""
    from engine.dockerapi import API_VERSION, MIN_API_VERSION
    from engine.dockerapi.system import SERVER_VERSION

    try:
        client = importlib.metadata.version("hostpanel")
    except importlib.metadata.PackageNotFoundError:
        client = SERVER_VERSION.split("-")[0]
    return {
        "Client": {"Version": client, "ApiVersion": API_VERSION, "Python": platform.python_version()},
        "Engine": {
            "Version": SERVER_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Instance": ctx.instance,
            "Root": str(ctx.root),
            "Kernel": platform.release(),
            "crun": _first_line(["crun", "--version"]),
            "conmon": _first_line(["conmon", "--version"]),
        },
    }


def cmd_version(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl version`: client and engine versions, as `docker version` lays them out."""
    info = version_info(ctx)
    if args.json:
        print_json(ctx.out, info)
        return 0
    for section, values in info.items():
        ctx.out.write(f"{section}:\n")
        width = max(len(k) for k in values) + 2
        for key, value in values.items():
            label = {"ApiVersion": "API version", "MinAPIVersion": "Minimum API version"}.get(key, key)
            ctx.out.write(f" {(label + ':').ljust(width + 8)}{value}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `events` and `version` to `hpctl`."""
    p = sub.add_parser("events", help="show what changes on the engine, as it happens")
    p.add_argument("--since", help="show events since (Unix time, RFC 3339 or a duration like 10m)")
    p.add_argument("--until", help="stop at this time (without it: follow until interrupted)")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="type=, event=, container=, image=, label=, volume=, network= (repeat to combine)",
    )
    p.add_argument("--tenant", help="only events of this tenant's objects")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_events)

    p = sub.add_parser("version", help="show hpctl's and the engine's versions")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(handler=cmd_version)
