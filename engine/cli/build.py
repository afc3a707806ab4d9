"""`hpctl build`: build an image from a Dockerfile, printing the steps and RUN output as they come."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidSpec
from engine.runtime.model import DEFAULT_TENANT

if TYPE_CHECKING:
    from engine.cli import CliContext


def register(subparsers: Any) -> None:
    """Add `build`."""
    p = subparsers.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("-t", "--tag", required=True, metavar="NAME[:TAG]", help="name of the built image")
    p.add_argument(
        "-f", "--file", type=Path, default=None, metavar="DOCKERFILE", help="default: CONTEXT/Dockerfile"
    )
    p.add_argument(
        "--build-arg", action="append", default=[], metavar="KEY=VALUE", help="set an ARG (repeatable)"
    )
    p.add_argument("--target", default=None, metavar="STAGE", help="build this stage instead of the last")
    p.add_argument("--no-cache", action="store_true", help="run every step again, ignoring the cache")
    p.add_argument(
        "--tenant",
        default=None,
        help="build as this tenant: its user namespace, quota, cache and images; the tag must be "
        f"TENANT/NAME[:TAG] (default: an operator build as tenant {DEFAULT_TENANT!r} making a base image)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("context", type=Path, metavar="CONTEXT_DIR", help="the build context directory")
    p.set_defaults(handler=cmd_build)


def parse_build_args(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict; a bare ``KEY`` takes its value from nowhere and is refused."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise InvalidSpec(f"invalid --build-arg {item!r}: use KEY=VALUE")
        out[key] = value
    return out


def cmd_build(ctx: CliContext, args: argparse.Namespace) -> int:
    from engine.build.model import BuildOptions

    caller = Path(ctx.cwd)  # relative paths are the caller's (the daemon may run this for hpctl)
    dockerfile = (caller / args.file).resolve() if args.file is not None else None
    options = BuildOptions(
        context=(caller / args.context).resolve(),
        tag=args.tag,
        dockerfile=dockerfile,
        build_args=parse_build_args(args.build_arg),
        target=args.target,
        no_cache=args.no_cache,
        tenant=args.tenant,
    )

    def show(stream: str, text: str) -> None:
        if args.quiet:
            return
        target = ctx.err if stream == "stderr" else ctx.out
        target.write(text + "\n")
        target.flush()

    result = ctx.engine.build(options, show)
    if args.quiet:
        ctx.out.write(result.image.id + "\n")
    else:
        ctx.out.write(
            f"Successfully built {result.image.short_id} as {options.tag} "
            f"({result.steps} steps, {result.cached_steps} cached, {result.run_steps} RUN executed)\n"
        )
    return 0
