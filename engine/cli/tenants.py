"""Tenant commands: `hpctl tenant quota|egress|storage ...`, `tenant usage T`, `tenant purge T`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from engine.cgroups.resources import Resources, format_bytes, parse_bytes
from engine.cli.output import print_json, print_table
from engine.cli.stats import add_resource_options, resources_from_args
from engine.runtime.tenant_disks import TenantDisk

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
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


Handler = Callable[["CliContext", argparse.Namespace], int]


def _tenant_command(
    sub: Subparsers, name: str, help: str, handler: Handler, *, json: bool = True
) -> argparse.ArgumentParser:
    """A `hpctl tenant ... NAME TENANT` command (with --json unless told otherwise)."""
    p = sub.add_parser(name, help=help)
    if json:
        p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("tenant")
    p.set_defaults(handler=handler)
    return p


def _subcommands(sub: Subparsers, name: str, help: str) -> Subparsers:
    group = sub.add_parser(name, help=help)
    inner = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    inner.required = True
    return inner


def register(sub: Subparsers) -> None:
    """Add the `tenant` commands to `hpctl`."""
    tsub = _subcommands(sub, "tenant", "tenant quotas, usage and purge")
    qsub = _subcommands(tsub, "quota", "show or set a tenant's resource quota")
    p = _tenant_command(
        qsub, "set", "replace a tenant's quota (limits not given become unlimited), live", cmd_quota_set
    )
    add_resource_options(p, pids_flag="--pids")
    _tenant_command(qsub, "show", "show a tenant's quota", cmd_quota_show)

    esub = _subcommands(tsub, "egress", "show or set the private ranges a tenant's containers may reach")
    p = _tenant_command(
        esub,
        "set",
        "replace a tenant's egress allow-list (no ranges: the default, internet only), live",
        cmd_egress_set,
    )
    p.add_argument("cidrs", nargs="*", metavar="CIDR", help="a range to allow, e.g. 10.20.0.0/16")
    _tenant_command(esub, "show", "show a tenant's egress allow-list", cmd_egress_show)

    ssub = _subcommands(tsub, "storage", "a tenant's root file system disk (bounds its containers' writes)")
    p = _tenant_command(
        ssub, "set", "give a tenant a disk of SIZE (e.g. 10g) or grow it; it never shrinks", cmd_storage_set
    )
    p.add_argument("size")
    _tenant_command(ssub, "show", "show a tenant's disk: size, bytes used, mounted", cmd_storage_show)
    _tenant_command(
        ssub, "rm", "delete a tenant's disk (only when it has no containers here)", cmd_storage_rm, json=False
    )

    _tenant_command(tsub, "usage", "a tenant's live totals and accumulated billing usage", cmd_usage)
    p = _tenant_command(tsub, "purge", "remove everything of a (deleted) tenant from this engine", cmd_purge)
    p.add_argument("--yes", action="store_true", help="really do it")
