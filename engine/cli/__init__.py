"""`hpctl`: the operator's command line, a thin layer over :class:`engine.Engine`.

Each submodule adds its commands with ``register(subparsers)``; a command's
handler takes ``(ctx, args)`` and returns the process exit code.

Verbs are registered lazily so each command imports only what it uses:
:data:`VERB_MODULES` names, for every submodule, the top-level verbs its
``register`` adds. `hpctl ps` imports and registers ``engine.cli.containers``
alone; `hpctl`, `hpctl --help`, an unknown verb or anything the quick look at
the command line cannot place registers every module (so help and argparse's
errors list every verb). To add a verb module ``engine/cli/foo.py``:

1. give it ``register(subparsers)`` (add_parser + ``set_defaults(handler=...)``);
2. add ``("foo", ("verb1", "verb2"))`` to :data:`VERB_MODULES` (its place sets
   its place in ``hpctl --help``); a new verb of an existing module goes into
   that module's tuple;
3. keep the module's top-level imports light: import engine internals (and
   anything heavy: pyroute2, the registry, build, the Docker API) inside the
   handlers. tests/engine/unit/test_cli_imports.py checks both the table and
   the imports of the common verbs;
4. write to ``ctx.out``/``ctx.err``, never to sys.stdout/sys.stderr: a verb the
   operator daemon may run for hpctl (engine/cli/remote.py: only those listed in
   ``REMOTE_VERBS``, which a new verb is not unless added there) streams what
   its handler writes through them.

With the operator daemon up for the same engine, the verbs of
``engine.cli.remote.REMOTE_VERBS`` run there (engine/dockerapi/cli.py), ``exec``
through its Docker API exec endpoints (engine/cli/remote_exec.py), and this
process imports nothing of the engine; otherwise everything runs in-process.
"""

from __future__ import annotations

import sys

# Nothing of the engine is imported here: a verb the operator daemon runs (engine/cli/remote.py)
# costs this process no more than Python's start.
TYPE_CHECKING = False  # not `typing`'s: a client of the daemon imports neither typing nor pathlib
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import TextIO

    from engine.engine import Engine

    Handler = Callable[["CliContext", "argparse.Namespace"], int]


class CliContext:
    """What a command handler needs: the engine (made on first use) and the streams."""

    def __init__(
        self,
        root: Path,
        instance: str,
        *,
        engine: Engine | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        cwd: str | None = None,
    ) -> None:
        self.root = root
        self.instance = instance
        self._engine: Engine | None = engine
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._cwd = cwd
        self.on_container: Callable[[str], None] = lambda _id: None
        """Told the id of a foreground run's container (the daemon passes it on for signals)."""

    @property
    def cwd(self) -> str:
        """The caller's working directory, which relative paths on the command line are relative to."""
        import os

        return self._cwd or os.getcwd()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from engine.engine import Engine

            self._engine = Engine(root=self.root, instance=self.instance)
        return self._engine


VERB_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("host", ("host",)),
    ("images", ("images", "tag", "rmi", "image")),
    (
        "containers",
        ("run", "create", "start", "ps", "inspect", "logs", "stop", "restart", "kill", "rm", "wait", "exec"),
    ),
    ("networks", ("network",)),
    ("system", ("system",)),
    ("docker", ("docker",)),
    ("stats", ("stats", "update")),
    ("tenants", ("tenant",)),
    ("volumes", ("volume",)),
    ("build", ("build",)),
    ("registry", ("pull", "push", "login", "logout")),
    ("interactive", ("attach", "cp")),
    ("control", ("pause", "unpause", "rename", "top", "port")),
    ("events", ("events", "version")),
    ("compose", ("compose",)),
)
"""Every `hpctl` submodule with the top-level verbs its ``register`` adds, in `--help` order."""

_GLOBAL_OPTIONS = ("--root", "--instance")


def command_verb(argv: Sequence[str]) -> str | None:
    """The verb of ``argv`` (``ps`` in ``--root X ps -a``); None when that is not plain to see.

    Only the global options (``--root X``, ``--instance=X``) may come before the verb; anything
    else (``-h``, an abbreviated option, no verb, an unknown verb) gives None.
    """
    args = iter(argv)
    for arg in args:
        if arg in _GLOBAL_OPTIONS:
            next(args, None)
        elif arg.startswith(tuple(f"{o}=" for o in _GLOBAL_OPTIONS)):
            continue
        elif arg.startswith("-"):
            return None
        else:
            return arg if any(arg in verbs for _, verbs in VERB_MODULES) else None
    return None


def verb_module(argv: Sequence[str]) -> str | None:
    """The submodule that registers the verb of ``argv``; None when that is not plain to see.

    None registers every module, so argparse answers (help, errors) exactly as it always did.
    """
    verb = command_verb(argv)
    return next((module for module, verbs in VERB_MODULES if verb in verbs), None)


def build_parser(
    modules: Sequence[str] | None = None, *, parser_class: type[argparse.ArgumentParser] | None = None
) -> argparse.ArgumentParser:
    """The `hpctl` argument parser with the verbs of ``modules`` (default: every verb) registered.

    ``parser_class`` (for the verbs' parsers too) lets the operator daemon capture what argparse
    prints (engine/dockerapi/cli.py).
    """
    import argparse
    import importlib
    from pathlib import Path

    parser = (parser_class or argparse.ArgumentParser)(
        prog="hpctl", description="HostPanel container engine CLI"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="engine root directory (default: $HOSTPANEL_ROOT or /var/lib/hostpanel)",
    )
    parser.add_argument(
        "--instance", default=None, help="engine instance name (default: $HOSTPANEL_INSTANCE or 'hostpanel')"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    names = [module for module, _ in VERB_MODULES] if modules is None else modules
    for name in names:
        importlib.import_module(f"engine.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hpctl`; returns the exit code.

    Verbs the operator daemon can run go to it when it serves this engine (engine/cli/remote.py);
    everything else, and everything when there is no daemon, runs in this process.
    """
    argv = sys.argv[1:] if argv is None else argv
    verb = command_verb(argv)
    if verb is not None:
        from engine.cli import remote

        # The daemon parses the command line itself and refuses (None) what needs this process.
        code = remote.run_remote(argv) if remote.wants_daemon(verb) else None
        if verb == "exec" and remote.daemon_wanted():  # the Docker API's exec endpoints
            from engine.cli import remote_exec

            code = remote_exec.run_exec(argv)
        if code is not None:
            return code
    module = verb_module(argv)
    args = build_parser(None if module is None else [module]).parse_args(argv)
    from engine.paths import default_instance, default_root

    ctx = CliContext(root=args.root or default_root(), instance=args.instance or default_instance())
    return run_handler(ctx, args)


def run_handler(ctx: CliContext, args: argparse.Namespace) -> int:
    """Run the parsed command's handler: its exit code, an engine error as `hpctl: <message>`."""
    from engine.errors import EngineError

    handler: Handler = args.handler
    try:
        return handler(ctx, args)
    except EngineError as exc:
        ctx.err.write(f"hpctl: {exc}\n")
        ctx.err.flush()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
