"""Tenant commands: `hpctl tenant quota|egress|storage ...`, `tenant usage T`, `tenant purge T`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.cgroups.resources import Resources, format_bytes, parse_bytes
from engine.cli.output import print_json, print_table
from engine.cli.stats import add_resource_options, resources_from_args
from engine.runtime.tenant_disks import TenantDisk

if TYPE_CHECKING:
    from engine.cli import CliContext


def _show_quota(ctx: CliContext, tenant: str, quota: Resources, as_json: bool) -> None:
    if as_json:
        print_json(ctx.out, {"tenant": tenant, **quota.to_dict()})
        return
    rows = [[key.replace("_", " "), value] for key, value in quota.describe().items()]
    ctx.out.write(f"tenant {tenant}\n")
    print_table(ctx.out, ["LIMIT", "VALUE"], rows)


def cmd_quota_set(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant quota set T ...`: replace the tenant's quota and apply it live."""
    quota = ctx.engine.set_tenant_quota(args.tenant, resources_from_args(args))
    _show_quota(ctx, args.tenant, quota, args.json)
    return 0


def cmd_quota_show(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant quota show T`: the tenant's stored quota."""
    _show_quota(ctx, args.tenant, ctx.engine.tenant_quota(args.tenant), args.json)
    return 0


def _show_egress(ctx: CliContext, tenant: str, allowed: Sequence[str], as_json: bool) -> None:
    if as_json:
        print_json(ctx.out, {"tenant": tenant, "egress_allow": list(allowed)})
        return
    ctx.out.write(f"tenant {tenant}\n")
    if not allowed:
        ctx.out.write("egress: default (internet only; no private, shared or link-local ranges)\n")
    for cidr in allowed:
        ctx.out.write(f"allowed: {cidr}\n")


def cmd_egress_set(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant egress set T [CIDR ...]`: replace the tenant's egress allow-list, live."""
    allowed = ctx.engine.set_tenant_egress_allow(args.tenant, args.cidrs)
    _show_egress(ctx, args.tenant, allowed, args.json)
    return 0


def cmd_egress_show(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant egress show T`: the tenant's egress allow-list."""
    _show_egress(ctx, args.tenant, ctx.engine.tenant_egress_allow(args.tenant), args.json)
    return 0


def _show_disk(ctx: CliContext, disk: TenantDisk, as_json: bool) -> None:
    if as_json:
        print_json(ctx.out, disk.to_dict())
        return
    rows = [[disk.tenant, format_bytes(disk.size), format_bytes(disk.used), "yes" if disk.mounted else "no"]]
    print_table(ctx.out, ["TENANT", "SIZE", "USED", "MOUNTED"], rows)


def cmd_storage_set(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant storage set T SIZE`: give the tenant a root file system disk, or grow it."""
    _show_disk(ctx, ctx.engine.set_tenant_storage(args.tenant, parse_bytes(args.size)), args.json)
    return 0


def cmd_storage_show(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant storage show T`: the tenant's root file system disk."""
    _show_disk(ctx, ctx.engine.tenant_storage(args.tenant), args.json)
    return 0


def cmd_storage_rm(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant storage rm T`: delete the tenant's disk (it has no containers here)."""
    ctx.engine.remove_tenant_storage(args.tenant)
    ctx.out.write(f"{args.tenant}\n")
    return 0


def cmd_usage(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant usage T`: live totals of the tenant's containers and its billing usage."""
    report = ctx.engine.tenant_usage(args.tenant)
    if args.json:
        print_json(ctx.out, report.to_dict())
        return 0
    live, usage, quota = report.live, report.usage, report.quota
    rows = [
        ["running containers", str(len(report.running)), ""],
        ["memory", format_bytes(live.memory_usage), format_bytes(quota.memory)],
        ["cpu time", f"{live.cpu_usage_ns / 1e9:.2f}s (live cgroup)", quota.describe()["cpus"] + " CPUs"],
        ["pids", str(live.pids), "unlimited" if quota.pids is None else str(quota.pids)],
        [
            "block I/O read / write",
            f"{format_bytes(live.io_read_bytes)} / {format_bytes(live.io_write_bytes)}",
            "",
        ],
        ["oom kills", str(live.oom_kills), ""],
        ["billed cpu-seconds", f"{usage.cpu_seconds:.2f}", ""],
        [
            "billed memory",
            f"{usage.memory_gib_hours:.6f} GiB-hours ({usage.memory_byte_seconds:.0f} B*s)",
            "",
        ],
        ["disk (container layers)", format_bytes(usage.disk_bytes), ""],
        ["samples", str(usage.samples), ""],
    ]
    ctx.out.write(f"tenant {report.tenant}\n")
    print_table(ctx.out, ["WHAT", "NOW / TOTAL", "QUOTA"], rows)
    return 0


def cmd_purge(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl tenant purge T --yes`: remove all this engine holds of tenant T (Engine.purge_tenant)."""
    if not args.yes:
        ctx.err.write(
            f"hpctl: this removes every container, volume, network, image and build cache entry of tenant "
            f"{args.tenant!r} and retires its uid range; add --yes to do it\n"
        )
        return 2
    report = ctx.engine.purge_tenant(args.tenant)
    if args.json:
        print_json(ctx.out, report.to_dict())
        return 0
    rows = [
        ["containers", ", ".join(report.containers) or "-"],
        ["volumes", ", ".join(report.volumes) or "-"],
        ["networks", ", ".join(report.networks) or "-"],
        ["images", str(sum(line.startswith("Untagged:") for line in report.images))],
        ["build cache entries", str(report.cache_entries)],
        ["unpacked layers", str(report.unpacked_layers)],
        ["retired uid range", "-" if report.uid_base is None else str(report.uid_base)],
    ]
    ctx.out.write(f"purged tenant {report.tenant}\n")
    print_table(ctx.out, ["WHAT", "REMOVED"], rows)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `tenant` commands to `hpctl`."""
    tenant = sub.add_parser("tenant", help="tenant quotas, usage and purge")
    tsub = tenant.add_subparsers(dest="tenant_command", metavar="COMMAND")
    tsub.required = True
    quota = tsub.add_parser("quota", help="show or set a tenant's resource quota")
    qsub = quota.add_subparsers(dest="quota_command", metavar="COMMAND")
    qsub.required = True

    p = qsub.add_parser(
        "set",
        help="replace a tenant's quota (limits not given become unlimited), live",
    )
    add_resource_options(p, pids_flag="--pids")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_quota_set)

    p = qsub.add_parser("show", help="show a tenant's quota")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_quota_show)

    egress = tsub.add_parser("egress", help="show or set the private ranges a tenant's containers may reach")
    esub = egress.add_subparsers(dest="egress_command", metavar="COMMAND")
    esub.required = True
    p = esub.add_parser(
        "set",
        help="replace a tenant's egress allow-list (no ranges: the default, internet only), live",
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.add_argument("cidrs", nargs="*", metavar="CIDR", help="a range to allow, e.g. 10.20.0.0/16")
    p.set_defaults(handler=cmd_egress_set)
    p = esub.add_parser("show", help="show a tenant's egress allow-list")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_egress_show)

    storage = tsub.add_parser(
        "storage", help="a tenant's root file system disk (bounds its containers' writes)"
    )
    ssub = storage.add_subparsers(dest="storage_command", metavar="COMMAND")
    ssub.required = True
    p = ssub.add_parser("set", help="give a tenant a disk of SIZE (e.g. 10g) or grow it; it never shrinks")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.add_argument("size")
    p.set_defaults(handler=cmd_storage_set)
    p = ssub.add_parser("show", help="show a tenant's disk: size, bytes used, mounted")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_storage_show)
    p = ssub.add_parser("rm", help="delete a tenant's disk (only when it has no containers here)")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_storage_rm)

    p = tsub.add_parser("usage", help="a tenant's live totals and accumulated billing usage")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_usage)

    p = tsub.add_parser("purge", help="remove everything of a (deleted) tenant from this engine")
    p.add_argument("--yes", action="store_true", help="really do it")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=cmd_purge)
