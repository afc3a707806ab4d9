"""``POST /hostpanel/cli``: the operator daemon runs one of `hpctl`'s verbs for it.

Not part of the Docker API, and only on the operator's socket (root-only), never on the
tenants' door. The body is ``{"argv": [...], "cwd": "/dir", "env": {"HOSTPANEL_ROOT": ...}}``
as engine/cli/remote.py sends it. The command line is parsed by `hpctl`'s own parser and run
by the verb's own handler over this daemon's engine, in a thread of its own; what both print
streams back as JSON lines (``{"o": ...}``, ``{"e": ...}``, a foreground run's
``{"container": id}``), then ``{"code": N}``. The daemon refuses with 409 (and the client then
runs the verb itself) a verb outside engine.cli.remote.REMOTE_VERBS, a ``run`` that needs the
caller's terminal, files or environment, and a command line naming another engine root or
instance than this daemon's. When the client goes away, the handler's next write fails and it
ends as an interrupted `hpctl` would (a foreground ``run --rm`` still removes its container).
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

from engine.cli import CliContext, build_parser, command_verb, run_handler, verb_module
from engine.cli.remote import ENDPOINT, NOT_SERVED, REMOTE_VERBS, args_served
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, json_response
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


class _Lines(io.TextIOBase):
    """A text stream whose writes go to the client as ``{key: text}`` lines; BrokenPipe once it left."""

    def __init__(self, key: str, items: queue.Queue[dict[str, Any]], gone: threading.Event) -> None:
        super().__init__()
        self.key, self.items, self.gone = key, items, gone

    def write(self, text: str) -> int:
        if self.gone.is_set():
            raise BrokenPipeError("the hpctl client went away")
        if text:
            self.items.put({self.key: text})
        return len(text)


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise APIError(400, f"{what} must be a list of strings")
    return value


def _stream(items: queue.Queue[dict[str, Any]], gone: threading.Event) -> Iterator[bytes]:
    """The queued lines as chunks (what is queued meanwhile goes in one chunk), up to the code."""
    try:
        while True:
            batch = [items.get()]
            while "code" not in batch[-1] and not items.empty():
                batch.append(items.get_nowait())
            yield b"".join(json.dumps(item).encode() + b"\n" for item in batch)
            if "code" in batch[-1]:
                return
    finally:
        gone.set()


def _run(ctx: CliContext, args: argparse.Namespace, items: queue.Queue[dict[str, Any]]) -> None:
    try:
        code = run_handler(ctx, args)
    except BrokenPipeError:
        return  # the client left; nobody reads the code
    except Exception as exc:  # a bug: the client says so rather than waiting for ever
        items.put({"e": f"hpctl: internal error in the operator daemon: {type(exc).__name__}: {exc}\n"})
        code = 1
    items.put({"code": code})


def register(router: Router, engine: Engine) -> None:
    """Add the endpoint that runs `hpctl`'s verbs over ``engine``."""

    @router.route("POST", ENDPOINT)
    def run_verb(request: Request) -> Response | Stream:
        body = request.json()
        if not isinstance(body, dict) or set(body) - {"argv", "cwd", "env"}:
            raise APIError(400, "the body takes argv, cwd and env only")
        argv = _strings(body.get("argv"), "argv")
        cwd, env = body.get("cwd"), body.get("env") or {}
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise APIError(400, "cwd must be an absolute path")
        if not isinstance(env, dict) or set(env) - {"HOSTPANEL_ROOT", "HOSTPANEL_INSTANCE"}:
            raise APIError(400, "env takes HOSTPANEL_ROOT and HOSTPANEL_INSTANCE only")
        _strings(list(env.values()), "env values")
        verb = command_verb(argv)
        if verb not in REMOTE_VERBS:
            return json_response({"message": f"{verb or 'this command'} runs in hpctl itself"}, NOT_SERVED)
        items: queue.Queue[dict[str, Any]] = queue.Queue()
        gone = threading.Event()
        out, err = _Lines("o", items, gone), _Lines("e", items, gone)
        _streams.pair = (out, err)
        try:
            args = build_parser([str(verb_module(argv))], parser_class=CapturingParser).parse_args(argv)
        except _Exit as stop:
            items.put({"code": stop.status})
            return Stream(_stream(items, gone))
        finally:
            _streams.pair = None
        if not args_served(args):
            return json_response(
                {"message": f"this {verb} needs the caller's terminal, files or environment"}, NOT_SERVED
            )
        root = (Path(cwd) / (args.root or default_root(env))).resolve()
        instance = args.instance or default_instance(env)
        if root != engine.paths.root.resolve() or instance != engine.instance:
            return json_response(
                {"message": "this daemon serves another engine root or instance"}, NOT_SERVED
            )
        ctx = CliContext(root, instance, engine=engine, out=cast(TextIO, out), err=cast(TextIO, err))
        ctx.on_container = lambda cid: items.put({"container": cid})
        threading.Thread(target=_run, args=(ctx, args, items), name="hpctl-verb", daemon=True).start()
        return Stream(_stream(items, gone))
