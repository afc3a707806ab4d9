"""`hpctl run -it`, `hpctl attach` and `hpctl cp`: the operator's terminal wired to a container.

With ``-t`` the local terminal goes into raw mode while attached (every key reaches the
container's terminal, which does the line editing) and its size follows the local window
(SIGWINCH). ctrl-p ctrl-q (or ``--detach-keys``) detaches and leaves the container running.
`cp` copies between a container path (``CONTAINER:PATH``) and a local path with `docker cp`'s
rules; ``-`` is a tar stream on stdin or stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import stat
import sys
import tarfile
import termios
import threading
import tty as tty_module
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from engine.cli import CliContext
from engine.errors import InvalidSpec, NotFound
from engine.images.extract import CopyTarget, extract_layer
from engine.runtime.attach import DetachScanner, parse_detach_keys
from engine.runtime.model import Container, ExecSpec
from engine.runtime.pty_exec import PtySession
from engine.volumes.archive import TreeExporter


class Session(Protocol):
    """What :func:`relay_terminal` drives: an attach session, or a terminal exec (:class:`PtyExec`)."""

    tty: bool

    def fileno(self) -> int: ...
    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None: ...
    def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def resize(self, rows: int, cols: int) -> None: ...


class PtyExec:
    """A :class:`PtySession` (an exec on its own terminal) as a :class:`Session`."""

    tty = True

    def __init__(self, session: PtySession) -> None:
        self.session = session

    def fileno(self) -> int:
        return self.session.fileno()

    def read(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        data = self.session.read(timeout=timeout)
        return None if data is None else ("stdout", data)

    def write(self, data: bytes) -> None:
        self.session.write(data)

    def close_stdin(self) -> None:
        return None  # a terminal has no end of input of its own: ctrl-D is a byte like others

    def resize(self, rows: int, cols: int) -> None:
        self.session.resize(rows, cols)


def relay_terminal(
    session: Session,
    *,
    stdin: bool,
    detach_keys: bytes,
    stdin_fd: int | None = None,
    stdout_fd: int | None = None,
    stderr_fd: int | None = None,
) -> str:
    """Relay the local stdio and an attach session until the output ends ('exited') or the
    detach keys are typed ('detached'). With a TTY session and a terminal on stdin, the terminal
    is raw meanwhile and its size is sent at once and on every SIGWINCH."""
    fd_in = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    fd_out = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    fd_err = sys.stderr.fileno() if stderr_fd is None else stderr_fd
    saved: list[Any] | None = None
    previous: Any = None
    on_terminal = session.tty and os.isatty(fd_in)
    if on_terminal:
        saved = termios.tcgetattr(fd_in)
        tty_module.setraw(fd_in, termios.TCSANOW)  # keep what was typed before

        def follow_size(_signum: int = 0, _frame: FrameType | None = None) -> None:
            with contextlib.suppress(OSError, InvalidSpec):
                size = os.get_terminal_size(fd_in)
                session.resize(size.lines, size.columns)

        follow_size()
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGWINCH, follow_size)
    scanner = DetachScanner(detach_keys)
    reading = stdin
    try:
        while True:
            ready, _, _ = select.select([session, *([fd_in] if reading else [])], [], [], 0.5)
            if session in ready:
                got = session.read(timeout=0)
                if got is not None:
                    stream, data = got
                    if not data:
                        return "exited"
                    _write_all(fd_err if stream == "stderr" else fd_out, data)
            if reading and fd_in in ready:
                typed = os.read(fd_in, 65536)
                if not typed:
                    rest = scanner.flush()
                    if rest:
                        session.write(rest)
                    session.close_stdin()
                    reading = False
                    continue
                forward, detach = scanner.feed(typed)
                if forward:
                    session.write(forward)
                if detach:
                    return "detached"
    finally:
        if saved is not None:
            termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def check_terminal(want_tty: bool) -> None:
    """InvalidSpec for ``-t`` when stdin is not a terminal (as docker says it)."""
    if want_tty and not os.isatty(sys.stdin.fileno()):
        raise InvalidSpec("the input device is not a TTY: drop -t, or run hpctl from a terminal")


def attach_and_run(
    ctx: CliContext, container: Container, *, stdin: bool, detach_keys: str, remove: bool
) -> int:
    """Attach to a created container, start it, relay until it exits or the user detaches.

    Returns the container's exit code (0 when detached: it keeps running)."""
    keys = parse_detach_keys(detach_keys)
    engine = ctx.engine
    try:
        with engine.attach(container.id) as session:
            engine.start(container.id)
            how = relay_terminal(session, stdin=stdin, detach_keys=keys)
        if how == "detached":
            ctx.err.write(
                f"\r\ndetached from {container.name}; it keeps running (hpctl attach {container.name})\n"
            )
            return 0
        final = engine.wait(container.id)
    except BaseException:
        if remove:
            engine.remove(container.id, force=True)
        raise
    if remove:
        engine.remove(container.id, force=True)
    return final.exit_code if final.exit_code is not None else 125


def exec_on_terminal(ctx: CliContext, ref: str, spec: ExecSpec, *, detach_keys: str) -> int:
    """`hpctl exec -it`: the command on its own terminal, sized like yours and following it.

    Returns its exit code; detaching (ctrl-p ctrl-q) ends it (an exec has no one to come back)."""
    keys = parse_detach_keys(detach_keys)
    size = os.get_terminal_size(sys.stdin.fileno())
    with ctx.engine.exec_pty(ref, spec, rows=size.lines, cols=size.columns) as session:
        relay_terminal(PtyExec(session), stdin=True, detach_keys=keys)
        session.wait(timeout=5)
    return session.close()


def cmd_attach(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl attach`: the container's output, and your input when it has an open stdin."""
    container = ctx.engine.get(args.container)
    check_terminal(container.tty and not args.no_stdin and container.open_stdin)
    keys = parse_detach_keys(args.detach_keys)
    with ctx.engine.attach(container.id) as session:
        how = relay_terminal(session, stdin=container.open_stdin and not args.no_stdin, detach_keys=keys)
    if how == "detached":
        return 0
    final = ctx.engine.wait(container.id)
    return final.exit_code if final.exit_code is not None else 125


# ---- cp ---------------------------------------------------------------------------------------
def split_location(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` as (container, path); a local path (also one with a '/' before any ':',
    like ./a:b) as (None, path)."""
    head, sep, tail = arg.partition(":")
    if not sep or "/" in head or not head or arg.startswith("."):
        return None, arg
    return head, tail or "/"


def cmd_cp(ctx: CliContext, args: argparse.Namespace) -> int:
    """`hpctl cp`: between a container and the host, like `docker cp` (tar semantics)."""
    src_ctr, src = split_location(args.src)
    dst_ctr, dst = split_location(args.dst)
    if (src_ctr is None) == (dst_ctr is None):
        raise InvalidSpec(
            "cp copies between a container and the host: one side is CONTAINER:PATH, the other local"
        )
    if src_ctr is not None:
        return _copy_out(ctx, src_ctr, src, dst)
    assert dst_ctr is not None
    return _copy_in(ctx, src, dst_ctr, dst)


def _copy_out(ctx: CliContext, ref: str, path: str, local: str) -> int:
    engine = ctx.engine
    if local == "-":
        engine.copy_from(ref, path, sys.stdout.buffer)
        return 0
    info = engine.stat_path(ref, path)
    target = Path(local)
    contents = path.rstrip("/").endswith("/.")
    if target.is_dir() and not contents:
        into, name = target, info.name  # into the directory, under the source's name
    elif target.is_dir():
        into, name = target, "."
    else:
        if local.endswith("/"):
            raise InvalidSpec(f"local directory {local} does not exist; create it first")
        into, name = target.parent, target.name
        if not into.is_dir():
            raise InvalidSpec(f"local directory {into} does not exist; create it first")
    read_end, write_end = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        with open(write_end, "wb") as out:
            try:
                engine.copy_from(ref, path, out, name=name)
            except BaseException as exc:
                failure.append(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    with open(read_end, "rb") as stream:
        _extract_local(stream, into)
    worker.join()
    if failure:
        raise failure[0]
    return 0


def _extract_local(stream: IO[bytes], into: Path) -> None:
    """Lay out a container's archive below ``into`` on the host, with the engine's safe extractor
    (links created as they are, never followed; files owned by the caller)."""
    fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        extract_layer(
            stream, into, uid_base=0, whiteouts=False, into=CopyTarget(fd, owner=(os.getuid(), os.getgid()))
        )
    finally:
        os.close(fd)


def _copy_in(ctx: CliContext, local: str, ref: str, path: str) -> int:
    engine = ctx.engine
    if local == "-":
        engine.copy_to(ref, path, sys.stdin.buffer)
        return 0
    source = Path(local)
    if not source.exists() and not source.is_symlink():
        raise InvalidSpec(f"local path {local} does not exist")
    if _is_dir_in(ctx, ref, path):
        into, name = path, source.name
    else:
        if path.endswith("/"):
            raise InvalidSpec(f"directory {path} does not exist in the container")
        into, name = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(path.rstrip("/"))
    read_end, write_end = os.pipe()

    def produce() -> None:
        with (
            open(write_end, "wb") as out,
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            parent = os.open(source.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                TreeExporter(tar, 0).add_entry(parent, source.name, name)
            finally:
                os.close(parent)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    with open(read_end, "rb") as stream:
        try:
            engine.copy_to(ref, into, stream)
        finally:
            while stream.read(65536):  # let the producer finish
                pass
    worker.join()
    return 0


def _is_dir_in(ctx: CliContext, ref: str, path: str) -> bool:
    """Whether ``path`` (a link there followed) is a directory in the container."""
    try:
        return stat.S_ISDIR(ctx.engine.stat_path(ref, path.rstrip("/") + "/.").mode)
    except (NotFound, InvalidSpec):
        return False


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `attach` and `cp` to `hpctl` (`run -it` lives with `run`)."""
    p = sub.add_parser("attach", help="attach your terminal to a running container's main process")
    p.add_argument("--no-stdin", action="store_true", help="do not send your input")
    p.add_argument("--detach-keys", default="", help="key sequence to detach (default: ctrl-p,ctrl-q)")
    p.add_argument("container")
    p.set_defaults(handler=cmd_attach)

    p = sub.add_parser("cp", help="copy files between a container and the host (CONTAINER:PATH or -)")
    p.add_argument("src", help="CONTAINER:PATH or a local path (- : a tar on stdin)")
    p.add_argument("dst", help="CONTAINER:PATH or a local path (- : a tar on stdout)")
    p.set_defaults(handler=cmd_cp)
