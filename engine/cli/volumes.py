"""Volume commands (`hpctl volume ...`) and the `-v` / `--tmpfs` options of `run` and `create`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.containers import parse_size
from engine.cli.output import human_size, print_json, print_table, time_ago
from engine.errors import EngineError, InvalidSpec

if TYPE_CHECKING:
    from engine.cli import CliContext
    from engine.volumes.spec import MountSpec


def _access(text: str, arg: str) -> bool:
    """True for 'ro', False for 'rw'."""
    if text not in ("ro", "rw"):
        raise InvalidSpec(f"invalid -v {arg!r}: the third part must be 'ro' or 'rw', not {text!r}")
    return text == "ro"


def parse_volume_arg(arg: str) -> MountSpec:
    """A `-v` value as a mount: ``NAME:/path[:ro|rw]`` (volume) or ``/host/path:/path[:ro|rw]`` (bind).

    Raises InvalidSpec for anything else (anonymous volumes, relative host
    paths, a bad name or target).
    """
    from engine.volumes.spec import MountSpec, validate_target, validate_volume_name

    parts = arg.split(":")
    if len(parts) == 1:
        raise InvalidSpec(
            f"invalid -v {arg!r}: anonymous volumes are not supported; name one: -v NAME:{arg or '/data'}"
        )
    if len(parts) > 3:
        raise InvalidSpec(f"invalid -v {arg!r}: use NAME:/path[:ro] or /host/path:/path[:ro]")
    source, target = parts[0], parts[1]
    read_only = _access(parts[2], arg) if len(parts) == 3 else False
    if not source:
        raise InvalidSpec(f"invalid -v {arg!r}: the source (volume name or host path) is empty")
    target = validate_target(target)
    if source.startswith("/"):
        return MountSpec(kind="bind", source=os.path.normpath(source), target=target, read_only=read_only)
    if source.startswith("."):
        raise InvalidSpec(f"invalid -v {arg!r}: a host path must be absolute ({source!r} is relative)")
    return MountSpec(kind="volume", source=validate_volume_name(source), target=target, read_only=read_only)


def parse_tmpfs_arg(arg: str) -> MountSpec:
    """A `--tmpfs` value as a mount: ``/path:size=16m[,mode=1777][,ro]``.

    A size is required. Raises InvalidSpec for a missing size, an unknown
    option, a bad size or mode.
    """
    from engine.volumes.spec import MountSpec, validate_target

    target, _, options = arg.partition(":")
    target = validate_target(target)
    size: int | None = None
    mode: int | None = None
    read_only = False
    for option in filter(None, options.split(",")):
        key, has_value, value = option.partition("=")
        if key == "size" and has_value:
            size = parse_size(value)
            if size <= 0:
                raise InvalidSpec(f"invalid --tmpfs {arg!r}: size must be more than 0")
        elif key == "mode" and has_value:
            if not value or any(c not in "01234567" for c in value) or int(value, 8) > 0o7777:
                raise InvalidSpec(f"invalid --tmpfs {arg!r}: mode must be octal, e.g. mode=1777")
            mode = int(value, 8)
        elif option in ("ro", "rw"):
            read_only = option == "ro"
        else:
            raise InvalidSpec(f"invalid --tmpfs option {option!r}: use size=SIZE, mode=OCTAL, ro or rw")
    if size is None:
        raise InvalidSpec(f"--tmpfs {target} needs a size, e.g. --tmpfs {target}:size=16m")
    return MountSpec(kind="tmpfs", target=target, size=size, mode=mode, read_only=read_only)


def mounts_from_args(volumes: Iterable[str], tmpfs: Iterable[str]) -> tuple[MountSpec, ...]:
    """The mounts that `-v` and `--tmpfs` options ask for."""
    return tuple(parse_volume_arg(v) for v in volumes) + tuple(parse_tmpfs_arg(t) for t in tmpfs)


def add_mount_options(p: argparse.ArgumentParser) -> None:
    """Add `-v` and `--tmpfs` to a `run`/`create` parser."""
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="SRC:DST[:ro]",
        help="mount a named volume (NAME:/path, created on first use) or a host path (/host:/path)",
    )
    p.add_argument(
        "--tmpfs", action="append", default=[], metavar="DST:size=N", help="mount a tmpfs (size required)"
    )


# ---- commands -------------------------------------------------------------------------


def cmd_create(ctx: CliContext, args: argparse.Namespace) -> int:
    size = parse_size(args.size) if args.size is not None else None
    labels = dict(item.partition("=")[::2] for item in args.label)
    volume = ctx.engine.volume_create(args.name, tenant=args.tenant, size=size, labels=labels)
    ctx.out.write(volume.name + "\n")
    return 0


def cmd_ls(ctx: CliContext, args: argparse.Namespace) -> int:
    usage = ctx.engine.volume_usage(args.tenant)
    if args.quiet:
        for u in usage:
            ctx.out.write(u.name + "\n")
        return 0
    if args.json:
        print_json(ctx.out, [u.__dict__ for u in usage])
        return 0
    volumes = {v.name: v for v in ctx.engine.volume_list(args.tenant)}
    rows = [
        [
            u.name,
            u.tenant,
            volumes[u.name].driver if u.name in volumes else "?",
            human_size(u.size) if u.size else "-",
            human_size(u.used),
            u.users,
            time_ago(volumes[u.name].created) if u.name in volumes else "",
        ]
        for u in usage
    ]
    print_table(ctx.out, ["VOLUME NAME", "TENANT", "DRIVER", "SIZE", "USED", "CONTAINERS", "CREATED"], rows)
    return 0


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    result = []
    for name in args.names:
        volume = ctx.engine.volume(name)
        data = volume.to_dict()
        data["mountpoint"] = str(ctx.engine.volumes.data_dir(name))
        data["usage"] = ctx.engine.volumes.usage(name).__dict__
        data["containers"] = ctx.engine.volumes.users(name)
        result.append(data)
    print_json(ctx.out, result)
    return 0


def cmd_rm(ctx: CliContext, args: argparse.Namespace) -> int:
    code = 0
    for name in args.names:
        try:
            ctx.engine.volume_remove(name, force=args.force)
            ctx.out.write(name + "\n")
        except EngineError as exc:
            ctx.err.write(f"hpctl: {exc}\n")
            code = exc.exit_code
    return code


def cmd_prune(ctx: CliContext, args: argparse.Namespace) -> int:
    for name in ctx.engine.volume_prune(args.tenant):
        ctx.out.write(f"Deleted volume {name}\n")
    return 0


def cmd_export(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.file == "-":
        ctx.engine.volume_export(args.name, sys.stdout.buffer)
        return 0
    target = Path(args.file)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(tmp, "wb") as f:
            ctx.engine.volume_export(args.name, f)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return 0


def cmd_import(ctx: CliContext, args: argparse.Namespace) -> int:
    size = parse_size(args.size) if args.size is not None else None
    if args.file == "-":
        ctx.engine.volume_import(args.name, sys.stdin.buffer, tenant=args.tenant, size=size)
    else:
        try:
            f = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InvalidSpec(f"cannot read {args.file!r}: {exc.strerror}") from None
        with f:
            ctx.engine.volume_import(args.name, f, tenant=args.tenant, size=size)
    ctx.out.write(args.name + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `hpctl volume ...` to `hpctl`."""
    volume = sub.add_parser("volume", help="manage named volumes")
    vsub = volume.add_subparsers(dest="volume_command", metavar="COMMAND")
    vsub.required = True

    p = vsub.add_parser("create", help="create a volume")
    p.add_argument("--size", help="cap, e.g. 1g (ext4 in a loop-mounted file); default: no cap")
    p.add_argument("--tenant", default="default", help="tenant the volume belongs to")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="label")
    p.add_argument("name")
    p.set_defaults(handler=cmd_create)

    p = vsub.add_parser("ls", help="list volumes with their size and disk use")
    p.add_argument("--tenant", help="only this tenant's volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(handler=cmd_ls)

    p = vsub.add_parser("inspect", help="show volumes as JSON")
    p.add_argument("names", nargs="+")
    p.set_defaults(handler=cmd_inspect)

    p = vsub.add_parser("rm", help="remove volumes and their data")
    p.add_argument("-f", "--force", action="store_true", help="remove even if containers use it")
    p.add_argument("names", nargs="+")
    p.set_defaults(handler=cmd_rm)

    p = vsub.add_parser("prune", help="remove every volume no container uses")
    p.add_argument("--tenant", help="only this tenant's volumes")
    p.set_defaults(handler=cmd_prune)

    p = vsub.add_parser("export", help="write a volume's content to a tar file ('-': stdout)")
    p.add_argument("name")
    p.add_argument("file")
    p.set_defaults(handler=cmd_export)

    p = vsub.add_parser("import", help="restore a tar file into a new or empty volume ('-': stdin)")
    p.add_argument("--size", help="cap of the volume if it is created, e.g. 1g")
    p.add_argument("--tenant", default="default", help="tenant of the volume if it is created")
    p.add_argument("name")
    p.add_argument("file")
    p.set_defaults(handler=cmd_import)
