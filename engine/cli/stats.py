"""Resource commands: `hpctl stats`, `hpctl update`, and the limit options of `run`/`create`."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.cli.output import print_json, print_table
from engine.errors import InvalidSpec

if TYPE_CHECKING:
    from engine.cgroups.resources import DeviceThrottle, Resources, ThrottleKind
    from engine.cgroups.usage import ContainerStats
    from engine.cli import CliContext

# engine.cgroups is imported by the functions that use it: `run` registers the limit options
# without loading it (engine/cli/__init__.py).

_THROTTLE_OPTIONS: tuple[tuple[str, ThrottleKind, str], ...] = (
    ("--device-read-bps", "read_bps", "DEV:RATE, e.g. /dev/vda:1mb (bytes per second)"),
    ("--device-write-bps", "write_bps", "DEV:RATE, e.g. /dev/vda:1mb (bytes per second)"),
    ("--device-read-iops", "read_iops", "DEV:N, e.g. /dev/vda:100 (operations per second)"),
    ("--device-write-iops", "write_iops", "DEV:N, e.g. /dev/vda:100 (operations per second)"),
)


def add_resource_options(p: argparse.ArgumentParser, *, pids_flag: str = "--pids-limit") -> None:
    """Add --memory, --memory-reservation, --cpus, --cpu-shares, the pids flag and --device-* to ``p``."""
    p.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, e.g. 256m or 1g (no swap beyond it)")
    p.add_argument("--memory-reservation", metavar="SIZE", help="soft memory limit (reclaimed first)")
    p.add_argument("--cpus", metavar="N", help="CPU limit in cores, e.g. 0.5")
    p.add_argument("--cpu-shares", metavar="N", help="relative CPU weight (default 1024)")
    p.add_argument(pids_flag, dest="pids_limit", metavar="N", help="maximum number of processes")
    for flag, _kind, text in _THROTTLE_OPTIONS:
        p.add_argument(flag, action="append", default=[], metavar="DEV:RATE", help=text)


def resources_from_args(args: argparse.Namespace) -> Resources:
    """The Resources the limit options describe; InvalidSpec for bad values (unset options stay None)."""
    from engine.cgroups.resources import (
        Resources,
        parse_bytes,
        parse_count,
        parse_cpus,
        parse_device_throttle,
    )

    devices: list[DeviceThrottle] = []
    for flag, kind, _text in _THROTTLE_OPTIONS:
        for value in getattr(args, flag.lstrip("-").replace("-", "_"), []) or []:
            devices.append(parse_device_throttle(kind, value))
    return Resources(
        memory=parse_bytes(args.memory, "memory limit") if args.memory is not None else None,
        memory_reservation=(
            parse_bytes(args.memory_reservation, "memory reservation")
            if args.memory_reservation is not None
            else None
        ),
        cpu_quota=parse_cpus(args.cpus) if args.cpus is not None else None,
        cpu_shares=parse_count(args.cpu_shares, "CPU shares") if args.cpu_shares is not None else None,
        pids=parse_count(args.pids_limit, "pids limit") if args.pids_limit is not None else None,
        devices=tuple(devices),
    )


# ---- stats ------------------------------------------------------------------------------------


def _io(read: int, write: int) -> str:
    from engine.cgroups.resources import format_bytes

    return f"{format_bytes(read)} / {format_bytes(write)}"


def stats_rows(before: Sequence[ContainerStats], after: Sequence[ContainerStats]) -> list[dict[str, Any]]:
    """Per container: the later reading with ``cpu_percent`` computed against the earlier one."""
    from engine.cgroups.usage import cpu_percent

    earlier = {s.id: s for s in before}
    rows = []
    for s in after:
        prev = earlier.get(s.id)
        data = s.to_dict()
        data["cpu_percent"] = round(cpu_percent(prev.cgroup, s.cgroup, s.at - prev.at), 2) if prev else 0.0
        rows.append(data)
    return rows


def _table(ctx: CliContext, rows: list[dict[str, Any]]) -> None:
    from engine.cgroups.resources import format_bytes

    table = []
    for r in rows:
        limit = r["memory_limit"]
        mem_pct = f"{r['memory_usage'] / limit * 100:.2f}%" if limit else "--"
        pids = f"{r['pids']}" + (f" / {r['pids_limit']}" if r["pids_limit"] is not None else "")
        table.append(
            [
                r["id"][:12],
                r["name"],
                r["tenant"],
                f"{r['cpu_percent']:.2f}%",
                f"{format_bytes(r['memory_usage'])} / {format_bytes(limit)}",
                mem_pct,
                pids,
                _io(r["io_read_bytes"], r["io_write_bytes"]),
            ]
        )
    print_table(
        ctx.out,
        [
            "CONTAINER ID",
            "NAME",
            "TENANT",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
            "BLOCK I/O (R / W)",
        ],
        table,
    )


def cmd_stats(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl stats`: CPU %, memory, pids and block I/O per running container."""
    if args.interval <= 0:
        raise InvalidSpec("--interval must be more than 0 seconds")
    before = ctx.engine.stats(args.containers)
    while True:
        time.sleep(args.interval)
        after = ctx.engine.stats(args.containers)
        rows = stats_rows(before, after)
        if args.json:
            if args.no_stream:
                print_json(ctx.out, rows)
            else:
                ctx.out.write(json.dumps(rows, sort_keys=True, default=str) + "\n")
        else:
            if not args.no_stream and ctx.out.isatty():
                ctx.out.write("\x1b[H\x1b[2J")
            _table(ctx, rows)
        ctx.out.flush()
        if args.no_stream:
            return 0
        before = after


def cmd_update(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl update`: change the limits of containers (at once when they run)."""
    resources = resources_from_args(args)
    if resources.is_unlimited:
        raise InvalidSpec("update needs at least one limit, e.g. --memory 512m, --cpus 1 or --pids-limit 200")
    for ref in args.containers:
        ctx.engine.update(ref, resources)
        ctx.out.write(ref + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `stats` and `update` to `hpctl`."""
    p = sub.add_parser("stats", help="live CPU, memory, pids and block I/O of running containers")
    p.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    p.add_argument("--json", action="store_true", help="JSON output (one line per reading when streaming)")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="time between readings")
    p.add_argument("containers", nargs="*", help="names or ids (default: every running container)")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("update", help="change the resource limits of containers, live")
    add_resource_options(p)
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_update)
