"""`hpctl compose [-f FILE] [-p NAME] up [-d] | down [-v] | ps | logs [-f] [SERVICE]` on the engine.

The operator's compose: the file is parsed by :mod:`engine.compose` (host binds allowed, as
this is the host's operator) and run by :class:`engine.compose.deploy.Deployment`.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.output import print_table
from engine.errors import InvalidSpec

if TYPE_CHECKING:  # the compose modules load when a compose command runs, not for every hpctl
    from engine.cli import CliContext
    from engine.compose.deploy import Deployment
    from engine.runtime.model import Container

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def _file(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    for name in DEFAULT_FILES:
        if Path(name).is_file():
            return Path(name)
    raise InvalidSpec(f"no compose file here: use -f FILE or add one of {', '.join(DEFAULT_FILES)}")


def _read(args: argparse.Namespace) -> tuple[str, Path]:
    path = _file(args)
    try:
        return path.read_text(encoding="utf-8"), path.resolve()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidSpec(f"cannot read compose file {str(path)!r}: {e}") from None


def _name(args: argparse.Namespace, text: str | None = None, path: Path | None = None) -> str:
    """-p, else the file's ``name:``, else the file's directory (as compose names projects)."""
    from engine.compose.deploy import project_name
    from engine.compose.yamlload import load

    if args.project:
        return project_name(args.project)
    if text is None or path is None:
        text, path = _read(args)
    declared = load(text).data.get("name")
    return project_name(str(declared) if declared else path.parent.name)


def _say(ctx: CliContext) -> Callable[[str], None]:
    def say(text: str) -> None:
        ctx.err.write(text + "\n")
        ctx.err.flush()

    return say


def _deployment(ctx: CliContext, args: argparse.Namespace) -> Deployment:
    """The project of -p or of the file (``ps``/``down``/``logs`` need only its name, so a file
    broken since ``up`` does not strand the project)."""
    from engine.compose.deploy import Deployment

    name = _name(args)  # before the engine opens: a bad name touches nothing
    return Deployment(ctx.engine, name, say=_say(ctx))


def follow_logs(
    ctx: CliContext, deployment: Deployment, containers: Sequence[Container], follow: bool
) -> None:
    """Print the containers' lines prefixed ``<name> | ``; with ``follow``, interleaved as they come
    until every container stops; without, merged by time."""
    width = max((len(c.name) for c in containers), default=0)
    if not follow:
        lines = [(line.time, c.name, line.text) for c in containers for line in deployment.engine.logs(c.id)]
        for _time, name, text in sorted(lines, key=lambda item: item[0]):
            ctx.out.write(f"{name.ljust(width)} | {text}\n")
        return
    pending: queue.Queue[tuple[str, str] | None] = queue.Queue()

    def pump(container: Container) -> None:
        try:
            for line in deployment.engine.logs(container.id, follow=True):
                pending.put((container.name, line.text))
        finally:
            pending.put(None)

    for container in containers:
        threading.Thread(target=pump, args=(container,), daemon=True).start()
    running = len(containers)
    while running:
        item = pending.get()
        if item is None:
            running -= 1
            continue
        ctx.out.write(f"{item[0].ljust(width)} | {item[1]}\n")
        ctx.out.flush()


def cmd_up(ctx: CliContext, args: argparse.Namespace) -> int:
    """Create or update the project; without -d, then follow its logs (Ctrl-C stops it)."""
    from engine.compose import load_project
    from engine.compose.deploy import Deployment

    text, path = _read(args)
    name = _name(args, text, path)
    project = load_project(text, name=name, environ=os.environ, base_dir=path.parent, allow_host_binds=True)
    deployment = Deployment(ctx.engine, name, say=_say(ctx))
    deployment.up(project, timeout=args.timeout, build=args.build)
    if args.detach:
        return 0
    try:
        follow_logs(ctx, deployment, deployment.containers(), follow=True)
    except KeyboardInterrupt:
        for container in deployment.containers():
            if container.is_running:
                ctx.err.write(f"stopping {container.name}\n")
                deployment.engine.stop(container.id)
        return 130
    return 0


def cmd_down(ctx: CliContext, args: argparse.Namespace) -> int:
    """Remove the project's containers and networks (and its volumes with -v)."""
    deployment = _deployment(ctx, args)
    deployment.down(volumes=args.volumes)
    return 0


def cmd_ps(ctx: CliContext, args: argparse.Namespace) -> int:
    """List the project's containers."""
    from engine.compose.deploy import LABEL_SERVICE

    deployment = _deployment(ctx, args)
    rows = [
        [
            c.name,
            c.labels.get(LABEL_SERVICE, ""),
            c.status if c.exit_code is None or c.is_running else f"{c.status} ({c.exit_code})",
            ", ".join(
                f"{p['host_ip']}:{p['host_port']}->{p['container_port']}/{p['protocol']}" for p in c.ports
            ),
            c.short_id,
        ]
        for c in deployment.containers()
    ]
    if args.quiet:
        ctx.out.writelines(f"{c.id}\n" for c in deployment.containers())
        return 0
    print_table(ctx.out, ["NAME", "SERVICE", "STATUS", "PORTS", "ID"], rows)
    return 0


def cmd_logs(ctx: CliContext, args: argparse.Namespace) -> int:
    """Print (or follow) the output of the project's containers, each line prefixed by its name."""
    deployment = _deployment(ctx, args)
    containers = deployment.containers(args.service)
    if args.service and not containers:
        raise InvalidSpec(f"no containers of service {args.service!r} in project {deployment.name!r}")
    follow_logs(ctx, deployment, containers, follow=args.follow)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `hpctl compose ...` to `hpctl`."""
    compose = sub.add_parser("compose", help="run a compose file's services on this engine")
    compose.add_argument(
        "-f", "--file", help="the compose file (default: compose.yaml ... in this directory)"
    )
    compose.add_argument(
        "-p", "--project-name", dest="project", help="project name (default: the directory's)"
    )
    csub = compose.add_subparsers(dest="command_name", metavar="COMMAND")
    csub.required = True

    p = csub.add_parser("up", help="create or update the services (only changed ones are recreated)")
    p.add_argument("-d", "--detach", action="store_true", help="return once started (default: follow logs)")
    p.add_argument("--build", action="store_true", help="build images even when they exist")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for depends_on conditions")
    p.set_defaults(handler=cmd_up)

    p = csub.add_parser("down", help="remove the containers and networks")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove the project's named volumes")
    p.set_defaults(handler=cmd_down)

    p = csub.add_parser("ps", help="list the project's containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.set_defaults(handler=cmd_ps)

    p = csub.add_parser("logs", help="show the services' output")
    p.add_argument("-f", "--follow", action="store_true", help="follow new output")
    p.add_argument("service", nargs="?", help="only this service")
    p.set_defaults(handler=cmd_logs)
