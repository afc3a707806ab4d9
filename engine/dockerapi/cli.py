"""``POST /hostpanel/cli``: the operator daemon runs one of `hpctl`'s quick verbs for it.

Not part of the Docker API, and only on the operator's socket (root-only), never on the
tenants' door. The body is ``{"argv": [...], "cwd": "/dir", "env": {"HOSTPANEL_ROOT": ...}}``
as engine/cli/remote.py sends it. The command line is parsed by `hpctl`'s own parser and run
by the verb's own handler over this daemon's engine, with what both print captured; the answer
is ``{"stdout": ..., "stderr": ..., "code": N}``. The daemon refuses with 409 (and the client
then runs the verb itself) a verb outside engine.cli.remote.REMOTE_VERBS, ``logs -f``, and a
command line naming another engine root or instance than this daemon's.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from engine.cli import CliContext, build_parser, command_verb, run_handler, verb_module
from engine.cli.remote import ENDPOINT, NOT_SERVED, served_remotely
from engine.dockerapi.http import APIError, Request, Response, Router, json_response
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


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise APIError(400, f"{what} must be a list of strings")
    return value


def register(router: Router, engine: Engine) -> None:
    """Add the endpoint for `hpctl`'s quick verbs over ``engine``."""

    @router.route("POST", ENDPOINT)
    def run_verb(request: Request) -> Response:
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
        if not served_remotely(verb, argv):
            return json_response({"message": f"{verb or 'this command'} runs in hpctl itself"}, NOT_SERVED)
        out, err = io.StringIO(), io.StringIO()
        _streams.pair = (out, err)
        try:
            args = build_parser([str(verb_module(argv))], parser_class=CapturingParser).parse_args(argv)
        except _Exit as stop:
            return json_response({"stdout": out.getvalue(), "stderr": err.getvalue(), "code": stop.status})
        finally:
            _streams.pair = None
        root = (Path(cwd) / (args.root or default_root(env))).resolve()
        instance = args.instance or default_instance(env)
        if root != engine.paths.root.resolve() or instance != engine.instance:
            return json_response(
                {"message": "this daemon serves another engine root or instance"}, NOT_SERVED
            )
        ctx = CliContext(root, instance, engine=engine, out=out, err=err)
        code = run_handler(ctx, args)
        return json_response({"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code})
