"""Container commands: run, create, start, ps, inspect, logs, stop, kill, restart, rm, wait, exec."""

from __future__ import annotations

import argparse
import contextlib
import sys
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from engine.cli.output import human_duration, print_json, print_table, time_ago
from engine.cli.stats import add_resource_options, resources_from_args
from engine.errors import EngineError, InvalidSpec

if TYPE_CHECKING:
    from engine.cli import CliContext
    from engine.logs.k8s_file import LogLine
    from engine.runtime.model import Container, ContainerSpec, LogOptions, SecretFile

# Engine modules are imported inside the handlers that use them: `hpctl ps` loads no more
# than listing needs (engine/cli/__init__.py, tests/engine/unit/test_cli_imports.py).


def parse_size(value: str) -> int:
    """'10m', '512k', '1g', '4096' as bytes; raise InvalidSpec otherwise."""
    units = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}
    text = value.strip().lower()
    number = text.rstrip("kmgb")
    unit = text[len(number) :]
    if not number.isdigit() or unit not in units:
        raise InvalidSpec(f"invalid size {value!r}: use a number with an optional k, m or g suffix")
    return int(number) * units[unit]


def _env_args(values: list[str]) -> tuple[str, ...]:
    from engine.cli.remote import caller_env  # `-e NAME` passes the caller's value, like docker

    return tuple(caller_env(values))


def _log_options(values: list[str]) -> LogOptions:
    from engine.runtime.model import LogOptions

    opts = LogOptions()
    size, files = opts.max_size, opts.max_files
    for item in values:
        key, _, value = item.partition("=")
        if key == "max-size":
            size = parse_size(value)
        elif key == "max-file":
            if not value.isdigit():
                raise InvalidSpec(f"invalid --log-opt {item!r}: max-file takes a whole number")
            files = int(value)
        else:
            raise InvalidSpec(f"unknown --log-opt {key!r}: use max-size=SIZE or max-file=N")
    return LogOptions(max_size=size, max_files=files)


def parse_secret_arg(arg: str) -> SecretFile:
    """A `--secret NAME=FILE` value: the file's bytes, seen in the container as /run/secrets/NAME.

    Raises InvalidSpec for another shape or a file that cannot be read.
    """
    name, sep, path = arg.partition("=")
    if not sep or not name or not path:
        raise InvalidSpec(f"invalid --secret {arg!r}: use NAME=FILE, e.g. --secret api-key=./api-key.txt")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidSpec(f"--secret {name}: cannot read {path}: {exc.strerror}") from None
    from engine.runtime.model import SecretFile

    return SecretFile(name=name, data=data)


def spec_from_args(args: argparse.Namespace) -> ContainerSpec:
    """The ContainerSpec that `run`/`create` arguments describe."""
    from engine.networks.ports import parse_publish
    from engine.runtime.model import ContainerSpec

    return ContainerSpec(
        image=args.image,
        command=tuple(args.cmd),
        name=args.name,
        tenant=args.tenant,
        entrypoint=(tuple(args.entrypoint.split()) if args.entrypoint is not None else None),
        env=_env_args(args.env),
        workdir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        init=args.init,
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout,
        labels=dict(item.partition("=")[::2] for item in args.label),
        log=_log_options(args.log_opt),
        resources=resources_from_args(args),
        **_network_fields(args.network or ["bridge"], args.network_alias),
        ports=tuple(parse_publish(p) for p in args.publish),
        allow_privileged=True,  # hpctl is the operator's tool; the panel never sets this
        mounts=_volumes_cli().mounts_from_args(args.volume, args.tmpfs),
        secrets=tuple(parse_secret_arg(s) for s in args.secret),
        tty=args.tty,
        open_stdin=args.interactive,
        # `run -i` in the foreground: stdin ends when you detach; `run -dit`/`create -i` keep it open
        stdin_once=args.interactive and not getattr(args, "detach", True),
    )


def _network_fields(networks: list[str], aliases: list[str]) -> dict[str, Any]:
    """The ContainerSpec network fields: one plain ``--network`` keeps the one-network fields."""
    from engine.networks.joins import joins_from_options

    joins = joins_from_options(networks, aliases)
    if len(networks) == 1 and "=" not in networks[0]:
        return {"network": joins[0].name, "network_aliases": joins[0].aliases}
    return {"networks": joins}


def _volumes_cli() -> ModuleType:
    """engine.cli.volumes, imported late: it imports parse_size from this module."""
    from engine.cli import volumes

    return volumes


def _add_create_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="container name (unique on this host)")
    p.add_argument("--tenant", default="default", help="tenant the container belongs to")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="environment variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="USER[:GROUP] (name or id) to run as")
    p.add_argument("--hostname", help="container host name (default: the short id)")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("--init", action="store_true", help="run an init (catatonit) as PID 1")
    p.add_argument("--stop-signal", help="signal that `stop` sends first (default: image's or SIGTERM)")
    p.add_argument("--stop-timeout", type=int, default=10, help="seconds `stop` waits before SIGKILL")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="label")
    p.add_argument("--log-opt", action="append", default=[], metavar="OPT", help="max-size=10m, max-file=3")
    p.add_argument(
        "--network",
        action="append",
        metavar="NET",
        help="bridge (the tenant's default; the default), none, host or a name; repeat to join several "
        "(eth0, eth1, ...); long form: name=NET,alias=ALIAS",
    )
    p.add_argument(
        "--network-alias", action="append", default=[], metavar="ALIAS", help="extra name on every network"
    )
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:PORT[/udp]")
    p.add_argument(
        "--secret", action="append", default=[], metavar="NAME=FILE", help="FILE as /run/secrets/NAME (0400)"
    )
    add_resource_options(p)
    _volumes_cli().add_mount_options(p)
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and send yours")
    p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    p.add_argument("image", help="image reference, e.g. busybox or busybox:latest")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments")


def status_text(c: Container) -> str:
    """STATUS column of `ps`: 'Up 3 minutes', 'Exited (0) 2 seconds ago', 'Created'."""
    if c.is_running:
        up = f"Up {human_duration(_age(c.started_at))}"
        return f"{up} (Paused)" if c.status == "paused" else up
    if c.status == "created":
        return "Created"
    label = "OOMKilled" if c.status == "oom-killed" else "Exited"
    return f"{label} ({c.exit_code}) {time_ago(c.oom_killed_at or c.finished_at)}".strip()


def _age(iso: str) -> float:
    from datetime import UTC, datetime

    if not iso:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds()


def _write_line(ctx: CliContext, line: LogLine, timestamps: bool) -> None:
    stream = ctx.out if line.stream == "stdout" else ctx.err
    stream.write(f"{line.time} {line.text}\n" if timestamps else f"{line.text}\n")
    stream.flush()


def cmd_run(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl run`: create, start, and (unless -d) stream output and exit with the container's code."""
    spec = spec_from_args(args)
    if args.rm and args.detach:
        raise InvalidSpec("--rm and -d together are not supported yet; remove the container with `hpctl rm`")
    if (args.interactive or args.tty) and not args.detach:
        from engine.cli import interactive

        interactive.check_terminal(args.tty)
        container = ctx.engine.create(spec)
        return interactive.attach_and_run(
            ctx, container, stdin=args.interactive, detach_keys=args.detach_keys, remove=args.rm
        )
    container = ctx.engine.run(spec)
    if args.detach:
        ctx.out.write(container.id + "\n")
        return 0
    ctx.on_container(container.id)
    return _attach_until_exit(ctx, container, remove=args.rm)


def _attach_until_exit(ctx: CliContext, container: Container, *, remove: bool) -> int:
    import signal
    import threading

    engine = ctx.engine

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(EngineError):
            engine.kill(container.id, signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, forward)
    try:
        for line in engine.logs(container.id, follow=True):
            _write_line(ctx, line, timestamps=False)
        final = engine.wait(container.id)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if remove:
            engine.remove(container.id, force=True)
    return final.exit_code if final.exit_code is not None else 125


def cmd_create(ctx: CliContext, args: argparse.Namespace) -> int:
    container = ctx.engine.create(spec_from_args(args))
    ctx.out.write(container.id + "\n")
    return 0


def _each(ctx: CliContext, refs: list[str], action: Any) -> int:
    code = 0
    for ref in refs:
        try:
            action(ref)
            ctx.out.write(ref + "\n")
        except EngineError as exc:
            ctx.err.write(f"hpctl: {exc}\n")
            code = exc.exit_code
    return code


def cmd_start(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.attach:
        container = ctx.engine.start(args.containers[0])
        return _attach_until_exit(ctx, container, remove=False)
    return _each(ctx, args.containers, ctx.engine.start)


def cmd_ps(ctx: CliContext, args: argparse.Namespace) -> int:
    containers = ctx.engine.list(all=args.all)
    if args.quiet:
        for c in containers:
            ctx.out.write(c.short_id + "\n")
        return 0
    if args.json:
        print_json(ctx.out, [c.to_dict() for c in containers])
        return 0
    rows = [
        [
            c.short_id,
            c.image,
            _shorten(" ".join(c.command), 30),
            time_ago(c.created),
            status_text(c),
            c.tenant,
            c.name,
        ]
        for c in containers
    ]
    print_table(ctx.out, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "TENANT", "NAMES"], rows)
    return 0


def _shorten(text: str, width: int) -> str:
    return f'"{text}"' if len(text) <= width else f'"{text[: width - 1]}…"'


def cmd_inspect(ctx: CliContext, args: argparse.Namespace) -> int:
    result = []
    for ref in args.containers:
        c = ctx.engine.get(ref)
        data = c.to_dict()
        files = ctx.engine.containers.files(c.id)
        data.update(log_path=str(files.log), bundle=str(files.bundle))
        result.append(data)
    print_json(ctx.out, result)
    return 0


def cmd_logs(ctx: CliContext, args: argparse.Namespace) -> int:
    tail = None if args.tail in (None, "all") else int(args.tail) if args.tail.isdigit() else None
    if args.tail not in (None, "all") and tail is None:
        raise InvalidSpec(f"invalid --tail {args.tail!r}: use a number or 'all'")
    from engine.logs.k8s_file import parse_since

    since = parse_since(args.since) if args.since else None
    for line in ctx.engine.logs(args.container, tail=tail, since=since, follow=args.follow):
        _write_line(ctx, line, timestamps=args.timestamps)
    return 0


def cmd_stop(ctx: CliContext, args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, lambda ref: ctx.engine.stop(ref, args.time))


def cmd_restart(ctx: CliContext, args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, lambda ref: ctx.engine.restart(ref, args.time))


def cmd_kill(ctx: CliContext, args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, lambda ref: ctx.engine.kill(ref, args.signal))


def cmd_rm(ctx: CliContext, args: argparse.Namespace) -> int:
    return _each(ctx, args.containers, lambda ref: ctx.engine.remove(ref, force=args.force))


def cmd_wait(ctx: CliContext, args: argparse.Namespace) -> int:
    code = 0
    for ref in args.containers:
        final = ctx.engine.wait(ref)
        code = final.exit_code if final.exit_code is not None else 0
        ctx.out.write(f"{code}\n")
    return 0


def cmd_exec(ctx: CliContext, args: argparse.Namespace) -> int:
    if not args.cmd:
        raise InvalidSpec("exec needs a command, e.g. `hpctl exec web sh -c 'echo hi'`")
    from engine.runtime.model import ExecSpec

    spec = ExecSpec(command=tuple(args.cmd), env=_env_args(args.env), user=args.user, workdir=args.workdir)
    if args.tty and args.interactive:
        from engine.cli import interactive

        interactive.check_terminal(True)
        return interactive.exec_on_terminal(ctx, args.container, spec, detach_keys=args.detach_keys)
    import subprocess

    stdin = sys.stdin.buffer if args.interactive else None
    proc = ctx.engine.exec(
        args.container, spec, stdin=stdin if stdin is not None else subprocess.DEVNULL, tty=args.tty
    )
    return proc.wait()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the container commands to `hpctl`."""
    p = sub.add_parser("run", help="create and start a container")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument(
        "--detach-keys", default="", help="key sequence to detach with -it (default: ctrl-p,ctrl-q)"
    )
    _add_create_options(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("create", help="create a container without starting it")
    _add_create_options(p)
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser("start", help="start created or stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="stream output and exit with its code")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_start)

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="include stopped containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(handler=cmd_ps)

    p = sub.add_parser("inspect", help="show a container's record as JSON")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until it stops")
    p.add_argument("--tail", help="number of lines from the end (or 'all')")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("--since", help="only lines since a time (RFC 3339, Unix time or 10m)")
    p.add_argument("container")
    p.set_defaults(handler=cmd_logs)

    for name, handler, what in (("stop", cmd_stop, "stop"), ("restart", cmd_restart, "restart")):
        p = sub.add_parser(name, help=f"{what} containers")
        p.add_argument("-t", "--time", type=int, default=None, help="seconds to wait before SIGKILL")
        p.add_argument("containers", nargs="+")
        p.set_defaults(handler=handler)

    p = sub.add_parser("kill", help="send a signal to containers")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_kill)

    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill running containers first")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_rm)

    p = sub.add_parser("wait", help="wait for containers to stop and print their exit codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(handler=cmd_wait)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("--detach-keys", default="", help="key sequence that ends -it (default: ctrl-p,ctrl-q)")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(handler=cmd_exec)
