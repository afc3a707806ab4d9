"""Image commands: `images`, `tag`, `rmi` and the `image` group (bootstrap, import, export, ls, rm ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from engine.cli.output import human_size, print_json, print_table, time_ago
from engine.errors import EngineError, InvalidSpec
from engine.images.model import Image
from engine.images.oci import parse_created
from engine.images.reference import split_tag

if TYPE_CHECKING:
    from engine.cli import CliContext

NONE = "<none>"


def register(subparsers: Any) -> None:
    """Add `images`, `tag`, `rmi` and the `image` command group."""
    images = subparsers.add_parser("images", help="list images")
    _list_args(images)

    tag = subparsers.add_parser("tag", help="give an image another name")
    _tag_args(tag)

    rmi = subparsers.add_parser("rmi", help="remove images or tags")
    _rmi_args(rmi)

    image = subparsers.add_parser("image", help="manage images")
    isub = image.add_subparsers(dest="image_command", metavar="SUBCOMMAND")
    isub.required = True

    boot = isub.add_parser(
        "bootstrap", help="build a base image on this host (busybox, or debian via debootstrap)"
    )
    boot.add_argument("kind", choices=("busybox", "debian"), help="which base image")
    boot.add_argument(
        "--with",
        dest="packages",
        action="append",
        default=[],
        metavar="PKG",
        help="extra Debian package to install (debian only; repeatable)",
    )
    boot.add_argument(
        "--tag",
        dest="reference",
        default=None,
        metavar="NAME[:TAG]",
        help="name of the image (default: busybox:latest or debian:bookworm)",
    )
    boot.set_defaults(handler=cmd_bootstrap)

    imp = isub.add_parser("import", help="import a docker-save, OCI layout or rootfs tar")
    imp.add_argument("file", type=Path, help="archive file or OCI layout directory")
    imp.add_argument(
        "reference",
        nargs="?",
        default=None,
        metavar="NAME:TAG",
        help="store only the archive's first image, under this name, ignoring the archive's tags "
        "(required for a plain rootfs tar and with --tenant)",
    )
    _tenant_arg(imp)
    imp.set_defaults(handler=cmd_import)

    exp = isub.add_parser("export", help="write an image as an OCI image layout tar")
    exp.add_argument("reference", metavar="NAME:TAG", help="image to export")
    exp.add_argument("file", type=Path, help="destination tar file")
    _tenant_arg(exp)
    exp.set_defaults(handler=cmd_export)

    ls = isub.add_parser("ls", aliases=["list"], help="list images (same as `hpctl images`)")
    _list_args(ls)

    rm = isub.add_parser("rm", aliases=["rmi"], help="remove images or tags (same as `hpctl rmi`)")
    _rmi_args(rm)

    itag = isub.add_parser("tag", help="give an image another name (same as `hpctl tag`)")
    _tag_args(itag)

    prune = isub.add_parser("prune", help="remove dangling images no container uses")
    prune.add_argument("-a", "--all", action="store_true", help="remove every image no container uses")
    prune.add_argument(
        "-f", "--force", action="store_true", help="accepted for docker compatibility (no prompt)"
    )
    prune.set_defaults(handler=cmd_prune)

    inspect = isub.add_parser("inspect", help="show an image as JSON")
    inspect.add_argument("reference", metavar="NAME", help="image name, id or digest")
    _tenant_arg(inspect)
    inspect.set_defaults(handler=cmd_inspect)


def _tenant_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tenant",
        default=None,
        help="act as this tenant: only its own images (TENANT/NAME:TAG) and the base images "
        "(default: the operator, whose new names are base images)",
    )


def _list_args(p: argparse.ArgumentParser) -> None:
    _tenant_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print only image ids")
    p.set_defaults(handler=cmd_images)


def _tag_args(p: argparse.ArgumentParser) -> None:
    _tenant_arg(p)
    p.add_argument("source", metavar="SOURCE", help="existing image (name, id or digest)")
    p.add_argument("target", metavar="TARGET", help="new NAME[:TAG]")
    p.set_defaults(handler=cmd_tag)


def _rmi_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="remove an image with several tags; untag an image a container uses",
    )
    p.add_argument("references", nargs="+", metavar="NAME", help="image names, ids or digests")
    p.set_defaults(handler=cmd_rmi)


def _in_use(ctx: CliContext) -> set[str]:
    """Ids of images containers use (empty if the engine cannot tell)."""
    fn = cast(Callable[[], set[str]], getattr(ctx.engine, "image_ids_in_use", lambda: set()))
    return set(fn())


def _created(image: Image) -> str:
    when = parse_created(image.created)
    return time_ago(when.isoformat()) if when is not None else ""


def image_json(image: Image) -> dict[str, Any]:
    """An image as the JSON `hpctl images --json` prints."""
    return {
        "id": image.id,
        "digest": image.digest,
        "repo_tags": list(image.repo_tags),
        "created": image.created,
        "size": image.size,
        "layers": list(image.layers),
    }


def cmd_images(ctx: CliContext, args: argparse.Namespace) -> int:
    """List images: REPOSITORY TAG ID CREATED SIZE, one row per tag (<none> for dangling)."""
    images = ctx.engine.images.list(tenant=args.tenant)
    if args.json:
        print_json(ctx.out, [image_json(i) for i in images])
        return 0
    if args.quiet:
        for image in images:
            ctx.out.write(image.short_id + "\n")
        return 0
    rows: list[list[str]] = []
    for image in images:
        names = [split_tag(t) for t in image.repo_tags] or [(NONE, NONE)]
        for repo, tag in names:
            rows.append([repo, tag, image.short_id, _created(image), human_size(image.size)])
    print_table(ctx.out, ["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"], rows)
    return 0


def cmd_bootstrap(ctx: CliContext, args: argparse.Namespace) -> int:
    """Bootstrap busybox or debian and print the new image's name and id."""
    store = ctx.engine.images
    if args.kind == "busybox":
        if args.packages:
            raise InvalidSpec("--with only applies to `hpctl image bootstrap debian`")
        image = store.bootstrap_busybox(args.reference or "busybox:latest")
    else:
        image = store.bootstrap_debian(args.reference or "debian:bookworm", include=tuple(args.packages))
    ctx.out.write(f"Bootstrapped image: {', '.join(image.repo_tags)} ({image.id})\n")
    return 0


def cmd_import(ctx: CliContext, args: argparse.Namespace) -> int:
    """Import an archive; print "Loaded image: NAME" (or its id when untagged) per image."""
    for image in ctx.engine.images.import_archive(args.file, args.reference, tenant=args.tenant):
        if image.repo_tags:
            for t in image.repo_tags:
                ctx.out.write(f"Loaded image: {t}\n")
        else:
            ctx.out.write(f"Loaded image ID: {image.id}\n")
    return 0


def cmd_export(ctx: CliContext, args: argparse.Namespace) -> int:
    """Export an image as an OCI layout tar."""
    ctx.engine.images.export(args.reference, args.file, tenant=args.tenant)
    ctx.out.write(f"Exported {args.reference} to {args.file}\n")
    return 0


def cmd_tag(ctx: CliContext, args: argparse.Namespace) -> int:
    """Tag an image (silent on success, like docker)."""
    ctx.engine.images.tag(args.source, args.target, tenant=args.tenant)
    return 0


def cmd_rmi(ctx: CliContext, args: argparse.Namespace) -> int:
    """Remove each named image or tag; keep going after an error and exit with the first error's code."""
    in_use = _in_use(ctx)
    code = 0
    for ref in args.references:
        try:
            for line in ctx.engine.images.remove(ref, force=args.force, in_use=in_use):
                ctx.out.write(line + "\n")
        except EngineError as exc:
            ctx.err.write(f"hpctl: {exc}\n")
            code = code or exc.exit_code
    return code


def cmd_prune(ctx: CliContext, args: argparse.Namespace) -> int:
    """Remove unused dangling (or, with --all, all unused) images; print what went."""
    removed = ctx.engine.images.prune(all=args.all, in_use=_in_use(ctx))
    for image in removed:
        for t in image.repo_tags:
            ctx.out.write(f"Untagged: {t}\n")
        ctx.out.write(f"Deleted: {image.id}\n")
    total = human_size(sum(i.size for i in removed))
    ctx.out.write(f"Removed {len(removed)} image{'s' if len(removed) != 1 else ''} ({total})\n")
    return 0


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    """Print everything about one image as JSON."""
    print_json(ctx.out, ctx.engine.images.inspect(args.reference, tenant=args.tenant))
    return 0
