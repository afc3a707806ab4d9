"""Registry commands: `pull`, `push`, `login`, `logout`.

Logins are kept in ``<engine root>/auth.json`` (mode 0600; see
engine.registry.credentials). ``--tls-verify=false`` allows plain HTTP and
self-signed certificates, like skopeo and podman.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from engine.cli.output import human_size
from engine.errors import InvalidSpec
from engine.registry import BlobProgress, Credentials, RegistryClient, TransferReport, parse_registry_url
from engine.registry.credentials import parse_credentials

if TYPE_CHECKING:
    from engine.cli import CliContext


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-verify",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="verify the registry's TLS certificate; false also allows plain HTTP (default: true)",
    )
    p.add_argument(
        "--creds", default=None, metavar="USER:PASSWORD", help="credentials (default: the stored login)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print no progress")


def register(subparsers: Any) -> None:
    """Add `pull`, `push`, `login` and `logout`."""
    pull = subparsers.add_parser("pull", help="pull an image from a registry")
    pull.add_argument("reference", metavar="REGISTRY/NAME[:TAG|@DIGEST]", help="image to pull")
    pull.add_argument(
        "--tag", default=None, metavar="NAME:TAG", help="local name (default: the reference as written)"
    )
    pull.add_argument(
        "--tenant",
        default=None,
        help="pull as this tenant: the local name (--tag) must be TENANT/NAME[:TAG] "
        "(default: the operator, making a base image)",
    )
    _common(pull)
    pull.set_defaults(handler=cmd_pull)

    push = subparsers.add_parser("push", help="push an image to a registry")
    push.add_argument("local", metavar="LOCAL_REF", help="local image (name, id or digest)")
    push.add_argument(
        "remote",
        nargs="?",
        default=None,
        metavar="REGISTRY/NAME[:TAG]",
        help="where to push (default: LOCAL_REF, which must then name a registry)",
    )
    _common(push)
    push.set_defaults(handler=cmd_push)

    login = subparsers.add_parser("login", help="store credentials for a registry (checked first)")
    login.add_argument("registry", metavar="REGISTRY", help="host[:port] of the registry")
    login.add_argument("-u", "--username", required=True, help="user name (any name with an API token)")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password or API token from stdin"
    )
    login.add_argument(
        "--tls-verify", type=_bool, default=True, metavar="BOOL", help="verify TLS (false: allow plain HTTP)"
    )
    login.set_defaults(handler=cmd_login)

    logout = subparsers.add_parser("logout", help="forget the stored credentials of a registry")
    logout.add_argument("registry", metavar="REGISTRY", help="host[:port] of the registry")
    logout.set_defaults(handler=cmd_logout)


class ProgressPrinter:
    """Prints one line per blob state; on a terminal, a live byte count for the blob in flight."""

    def __init__(self, out: TextIO, verb: str, quiet: bool = False) -> None:
        self.out = out
        self.verb = verb
        self.quiet = quiet
        self.live = out.isatty()

    def __call__(self, event: BlobProgress) -> None:
        if self.quiet:
            return
        short = event.digest.split(":", 1)[-1][:12]
        if event.status == "transferring":
            if self.live:
                self.out.write(
                    f"\r{short}: {self.verb} {human_size(event.done)} / {human_size(event.total)}\x1b[K"
                )
                self.out.flush()
            return
        words = {"exists": "Already exists", "mounted": "Mounted from another repository", "complete": "Done"}
        prefix = "\r" if self.live else ""
        line = f"{short}: {words.get(event.status, event.status)} ({event.kind}, {human_size(event.total)})"
        self.out.write(f"{prefix}{line}\x1b[K\n" if self.live else f"{line}\n")


def _transfer_options(ctx: CliContext, args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """What pull and push both take from the command line: credentials, TLS checking, progress."""
    return {
        "credentials": parse_credentials(args.creds) if args.creds else None,
        "insecure": not args.tls_verify,
        "progress": ProgressPrinter(ctx.out, verb, args.quiet),
    }


def _print_report(ctx: CliContext, report: TransferReport, done: str, moved: str, kept: str) -> int:
    """One line on what a pull or push did (blobs ``moved``, blobs ``kept``); the exit status."""
    ctx.out.write(
        f"{done} {report.reference} (digest {report.manifest_digest}): "
        f"{len(report.transferred)} blobs {moved} ({human_size(report.bytes_transferred)}), "
        f"{len(report.skipped)} {kept}\n"
    )
    return 0


def cmd_pull(ctx: CliContext, args: argparse.Namespace) -> int:
    """Pull an image and print its name, digest and what was transferred."""
    report = ctx.engine.pull(
        args.reference, tag_as=args.tag, tenant=args.tenant, **_transfer_options(ctx, args, "downloading")
    )
    return _print_report(ctx, report, "Pulled", "downloaded", "already present")


def cmd_push(ctx: CliContext, args: argparse.Namespace) -> int:
    """Push an image and print where it went and its digest."""
    report = ctx.engine.push(args.local, args.remote, **_transfer_options(ctx, args, "uploading"))
    mounted = f"already there, {len(report.mounted)} mounted"
    return _print_report(ctx, report, "Pushed", "uploaded", mounted)


def cmd_login(ctx: CliContext, args: argparse.Namespace) -> int:
    """Check the credentials against the registry, then store them in <root>/auth.json."""
    if not args.password_stdin:
        raise InvalidSpec(
            'give the password on stdin: echo "$TOKEN" | hpctl login REGISTRY -u USER --password-stdin'
        )
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidSpec("no password on stdin; pipe the password or API token into --password-stdin")
    endpoint = parse_registry_url(args.registry)
    credentials = Credentials(args.username, password)
    RegistryClient(endpoint, credentials, insecure=not args.tls_verify).check_login()
    ctx.engine.auth_file.set(endpoint.host, credentials)
    ctx.out.write(f"Login Succeeded (stored in {ctx.engine.auth_file.path})\n")
    return 0


def cmd_logout(ctx: CliContext, args: argparse.Namespace) -> int:
    """Remove the stored login of a registry."""
    endpoint = parse_registry_url(args.registry)
    if not ctx.engine.auth_file.remove(endpoint.host):
        raise InvalidSpec(f"not logged in to {endpoint.host}")
    ctx.out.write(f"Removed login credentials for {endpoint.host}\n")
    return 0
