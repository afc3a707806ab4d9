"""``POST /hostpanel/cli``: the operator daemon runs one of `hpctl`'s verbs for it.

Not part of the Docker API, and only on the operator's socket (root-only), never on the
tenants' door. The body (engine/cli/remote.py: request_body) carries the caller's working
directory, its HOSTPANEL_ROOT/HOSTPANEL_INSTANCE settings and the command line. That is parsed
by `hpctl`'s own parser and run by the verb's own handler over this daemon's engine, in a
thread of its own; what both print streams back as multiplexed frames (stdout, stderr, and the
control stream: a foreground run's ``container <id>``, then ``exit <code>``).

The daemon refuses with 409 (and the client then runs the verb itself) a verb outside
engine.cli.remote.REMOTE_VERBS, a ``run`` that needs the caller's terminal, files or
environment, and a command line naming another engine root or instance than this daemon's.
When the client goes away, the handler's next write fails and it ends as an interrupted
`hpctl` would (a foreground ``run --rm`` still removes its container).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO, cast

from engine.cli import CliContext, build_parser, command_verb, run_handler, verb_module
from engine.cli.remote import (
    CONTENT_TYPE,
    CONTROL,
    ENDPOINT,
    NOT_SERVED,
    REMOTE_VERBS,
    STDERR,
    STDOUT,
    args_served,
    parse_request,
)
from engine.cli.remote_exec import INSTANCE_HEADER, ROOT_HEADER
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, frame, json_response
from engine.paths import default_instance, default_root

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from engine.engine import Engine

_streams = threading.local()
"""The current request's (stdout, stderr) buffers: argparse makes the verbs' parsers itself."""


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class CapturingParser(argparse.ArgumentParser):
    """An ArgumentParser that writes help and errors into the request's buffers and never exits."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            out, err = _streams.pair
            (out if file is sys.stdout else err).write(message)  # argparse's default is stderr

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise _Exit(status)


Frames = queue.Queue[bytes]


class _FrameWriter(io.TextIOBase):
    """A text stream whose writes go to the client as frames of ``stream``; BrokenPipe once it left."""

    def __init__(self, stream: int, frames: Frames, gone: threading.Event) -> None:
        super().__init__()
        self.stream, self.frames, self.gone = stream, frames, gone

    def write(self, text: str) -> int:
        if self.gone.is_set():
            raise BrokenPipeError("the hpctl client went away")
        if text:
            self.frames.put(frame(self.stream, text.encode("utf-8", "surrogateescape")))
        return len(text)


def _control(message: str) -> bytes:
    return frame(CONTROL, message.encode())


@functools.cache
def _parser(module: str) -> argparse.ArgumentParser:
    """hpctl's parser with ``module``'s verbs, made once: parsing does not change it."""
    return build_parser([module], parser_class=CapturingParser)


def _is_exit(data: bytes) -> bool:
    return data[0] == CONTROL and data[8:13] == b"exit "


def _stream(frames: Frames, gone: threading.Event) -> Iterator[bytes]:
    """The queued frames as chunks (what is queued meanwhile goes in one chunk), up to the exit."""
    try:
        while True:
            batch = [frames.get()]
            while not _is_exit(batch[-1]) and not frames.empty():
                batch.append(frames.get_nowait())
            yield b"".join(batch)
            if _is_exit(batch[-1]):
                return
    finally:
        gone.set()


def _run(ctx: CliContext, args: argparse.Namespace, frames: Frames) -> None:
    try:
        code = run_handler(ctx, args)
    except BrokenPipeError:
        return  # the client left; nobody reads the code
    except Exception as exc:  # a bug: the client says so rather than waiting for ever
        message = f"hpctl: internal error in the operator daemon: {type(exc).__name__}: {exc}\n"
        frames.put(frame(STDERR, message.encode()))
        code = 1
    frames.put(_control(f"exit {code}"))


ANOTHER_ENGINE = "this daemon serves another engine root or instance"


def serves(engine: Engine, root: Path, instance: str) -> bool:
    """Whether ``engine`` is the one at ``root`` (absolute) named ``instance``."""
    return root.resolve() == engine.paths.root.resolve() and instance == engine.instance


def check_caller_engine(engine: Engine, request: Request) -> None:
    """A 409 when `hpctl exec`'s create names another engine than ``engine`` (engine/cli/remote_exec.py).

    Requests without those headers (every Docker client) are not concerned.
    """
    root, instance = request.headers.get(ROOT_HEADER), request.headers.get(INSTANCE_HEADER)
    if root is None and instance is None:
        return
    # http.server reads header values as Latin-1; hpctl sends the path's bytes
    path = os.fsdecode(str(root or "").encode("latin-1", "replace"))
    if root and not path.startswith("/"):
        raise APIError(400, f"{ROOT_HEADER} must be an absolute path")
    if not serves(engine, Path(path) if root else default_root({}), instance or default_instance({})):
        raise APIError(NOT_SERVED, ANOTHER_ENGINE)


def register(router: Router, engine: Engine) -> None:
    """Add the endpoint that runs `hpctl`'s verbs over ``engine``."""

    @router.route("POST", ENDPOINT)
    def run_verb(request: Request) -> Response | Stream:
        if request.headers.get("Content-Type") != CONTENT_TYPE:
            raise APIError(400, f"the body must be {CONTENT_TYPE} (as hpctl sends it)")
        try:
            cwd, env, argv = parse_request(request.body())
        except ValueError as exc:
            raise APIError(400, f"malformed hpctl command: {exc}") from None
        if not cwd.startswith("/"):
            raise APIError(400, "the working directory must be an absolute path")
        if set(env) - {"HOSTPANEL_ROOT", "HOSTPANEL_INSTANCE"}:
            raise APIError(400, "only HOSTPANEL_ROOT and HOSTPANEL_INSTANCE may be passed")
        verb = command_verb(argv)
        if verb not in REMOTE_VERBS:
            return json_response({"message": f"{verb or 'this command'} runs in hpctl itself"}, NOT_SERVED)
        frames: Frames = queue.Queue()
        gone = threading.Event()
        out, err = _FrameWriter(STDOUT, frames, gone), _FrameWriter(STDERR, frames, gone)
        _streams.pair = (out, err)
        try:
            args = _parser(str(verb_module(argv))).parse_args(argv)
        except _Exit as stop:
            frames.put(_control(f"exit {stop.status}"))
            return Stream(_stream(frames, gone), content_type=CONTENT_TYPE)
        finally:
            _streams.pair = None
        if not args_served(args):
            return json_response(
                {"message": f"this {verb} needs the caller's terminal, files or environment"}, NOT_SERVED
            )
        root = (Path(cwd) / (args.root or default_root(env))).resolve()
        instance = args.instance or default_instance(env)
        if not serves(engine, root, instance):
            return json_response({"message": ANOTHER_ENGINE}, NOT_SERVED)
        ctx = CliContext(root, instance, engine=engine, out=cast(TextIO, out), err=cast(TextIO, err), cwd=cwd)
        ctx.on_container = lambda cid: frames.put(_control(f"container {cid}"))
        threading.Thread(target=_run, args=(ctx, args, frames), name="hpctl-verb", daemon=True).start()
        return Stream(_stream(frames, gone), content_type=CONTENT_TYPE)
