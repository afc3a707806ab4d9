"""`hpctl` as a thin client of the operator daemon (`hpctl docker serve`).

A whole `hpctl ps` in this process costs Python's start plus importing the engine (about a
hundred milliseconds of modules). When the operator daemon answers on its socket
(``$HOSTPANEL_DOCKER_SOCKET`` or /run/hostpanel/docker.sock) and serves the same engine root
and instance, the verbs of :data:`REMOTE_VERBS` are sent to it instead: it parses the command
line with the same parser, runs the same handler on its warm engine and streams back what the
handler writes and then its exit code, so output, errors and exit codes are the ones the verb
gives in-process. Only the standard library is imported here, never the engine.

``run`` goes to the daemon only when it needs nothing of this process: no ``-i``/``-t``, no
``--secret FILE`` to read, no ``-e NAME`` taking this process's value (:func:`args_served`);
the client then parses the command line first, with the same parser. A foreground ``run``
forwards SIGINT, SIGTERM and SIGHUP to the container as the in-process ``run`` does.

Everything else runs in-process (``exec``, ``build``, ``cp``, terminals ...), as does every
verb when there is no daemon, when it serves another root or instance, when it is older and
lacks the endpoint, or with ``HOSTPANEL_CLI_DAEMON=0``.

The answer (engine/dockerapi/cli.py) is a chunked stream of JSON lines: ``{"o": text}``
(stdout), ``{"e": text}`` (stderr), ``{"container": id}`` (a foreground run's container, for
signals), and last ``{"code": N}``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

ENDPOINT = "/hostpanel/cli"
"""The operator socket's endpoint that runs a verb (engine/dockerapi/cli.py)."""

REMOTE_VERBS = frozenset(
    {
        "ps",
        "images",
        "inspect",
        "logs",
        "stop",
        "rm",
        "kill",
        "restart",
        "pause",
        "unpause",
        "port",
        "top",
        "run",
    }
)
"""Verbs that need nothing of this process but the command line (``run``: see args_served)."""

PARSED_VERBS = frozenset({"run"})
"""Verbs the client parses first, to see whether the daemon can run them (args_served)."""

NOT_SERVED = 409
"""The daemon's answer when it will not run the verb (another root, another verb): run it here."""

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What a foreground run passes on to its container (as engine/cli/containers.py does)."""

CONNECT_TIMEOUT = 0.5


def daemon_socket() -> str:
    """The operator socket's path (the same rule as engine.dockerapi.default_socket)."""
    return os.environ.get("HOSTPANEL_DOCKER_SOCKET") or "/run/hostpanel/docker.sock"


def wants_daemon(verb: str) -> bool:
    """Whether to try the daemon for ``verb``: one of REMOTE_VERBS, and not HOSTPANEL_CLI_DAEMON=0."""
    return os.environ.get("HOSTPANEL_CLI_DAEMON", "1") != "0" and verb in REMOTE_VERBS


def args_served(args: argparse.Namespace) -> bool:
    """Whether the parsed command line needs nothing of the calling process (its files, terminal, env)."""
    if args.command != "run":
        return args.command in REMOTE_VERBS
    local = args.interactive or args.tty or args.secret or any("=" not in item for item in args.env)
    return not local


def request_body(argv: Sequence[str]) -> bytes:
    """What the daemon needs to run ``argv`` as this process would: the caller's cwd and engine env."""
    env = {k: os.environ[k] for k in ("HOSTPANEL_ROOT", "HOSTPANEL_INSTANCE") if k in os.environ}
    return json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": env}).encode()


def _connect() -> socket.socket | None:
    path = daemon_socket()
    if not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # a stale socket file, or a daemon we may not talk to
    sock.settimeout(None)  # `stop` and a foreground `run` take as long as they take
    return sock


def _post(sock: socket.socket, argv: Sequence[str]) -> tuple[int, dict[bytes, bytes], IO[bytes]]:
    body = request_body(argv)
    head = (
        f"POST {ENDPOINT} HTTP/1.1\r\nHost: hostpanel\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    reader = sock.makefile("rb")
    parts = reader.readline().split(b" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    headers = {}
    for line in iter(reader.readline, b"\r\n"):
        if not line:
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader


def _body(headers: dict[bytes, bytes], reader: IO[bytes]) -> Iterator[bytes]:
    """The answer's body, chunk by chunk as it arrives (chunked or Content-Length)."""
    if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
        yield reader.read(int(headers.get(b"content-length", b"0") or 0))
        return
    while True:
        size = int(reader.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        yield reader.read(size)
        reader.readline()  # the CRLF after the chunk


def _lines(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield json.loads(line)


def run_remote(argv: Sequence[str]) -> int | None:
    """Run ``argv`` through the daemon; its exit code, or None when it should run in-process.

    None means nothing ran: no daemon, not our engine, an older daemon. Once the daemon has
    accepted the verb its answer is final (a failure is reported, never retried here).
    """
    sock = _connect()
    if sock is None:
        return None
    previous: dict[int, Any] = {}
    try:
        status, headers, reader = _post(sock, argv)
        if status in (0, 404, NOT_SERVED):
            return None
        if status != 200:
            answer = b"".join(_body(headers, reader))
            try:
                message = json.loads(answer).get("message", "")
            except (ValueError, AttributeError):
                message = ""
            sys.stderr.write(f"hpctl: the operator daemon failed: {message or status}\n")
            return 1
        for item in _lines(_body(headers, reader)):
            if "o" in item:
                sys.stdout.write(item["o"])
                sys.stdout.flush()
            elif "e" in item:
                sys.stderr.write(item["e"])
                sys.stderr.flush()
            elif "container" in item:
                previous = _forward_signals(argv, item["container"])
            elif "code" in item:
                return int(item["code"])
        sys.stderr.write("hpctl: the operator daemon closed the connection before the command ended\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()


def _forward_signals(argv: Sequence[str], container: str) -> dict[int, Any]:
    """Pass SIGINT/SIGTERM/SIGHUP on to ``container`` (`hpctl kill -s SIG`, through the daemon)."""
    options = _global_options(argv)

    def forward(signum: int, _frame: FrameType | None) -> None:
        sock = _connect()
        if sock is None:
            return
        try:
            _, headers, reader = _post(sock, [*options, "kill", "-s", signal.Signals(signum).name, container])
            for _chunk in _body(headers, reader):  # the answer ("<id>" or an error) is not shown
                pass
        except OSError:
            pass
        finally:
            sock.close()

    return {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}


def _global_options(argv: Sequence[str]) -> list[str]:
    """The ``--root``/``--instance`` options before the verb of ``argv``."""
    options: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--root", "--instance"):
            options += [arg, next(args, "")]
        elif arg.startswith(("--root=", "--instance=")):
            options.append(arg)
        else:
            break
    return options
