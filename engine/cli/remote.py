"""`hpctl` as a thin client of the operator daemon (`hpctl docker serve`).

A whole `hpctl ps` in this process costs Python's start plus importing the engine (about a
hundred milliseconds of modules). When the operator daemon answers on its socket
(``$HOSTPANEL_DOCKER_SOCKET`` or /run/hostpanel/docker.sock) and serves the same engine root
and instance, the verbs of :data:`REMOTE_VERBS` are sent to it instead: it parses the command
line with the same parser, runs the same handler on its warm engine and streams back what the
handler writes and then its exit code, so output, errors and exit codes are the ones the verb
gives in-process. Only the standard library is imported here, never the engine.

``build`` goes to the daemon too: it reads the context directory and Dockerfile as this
process would, relative to its working directory, and streams the build's output; a client
that goes away stops the build at its next line of output. ``run`` goes to the daemon only
when it needs nothing of this process: no ``-i``/``-t``, no ``--secret FILE`` to read, no
``-e NAME`` taking this process's value (:func:`args_served`; the daemon parses the command
line and refuses the others, which then run here). A foreground ``run``
forwards SIGINT, SIGTERM and SIGHUP to the container as the in-process ``run`` does.

``exec`` (without ``-t``) goes to the daemon too, through the Docker API's own exec
endpoints (engine/cli/remote_exec.py, which uses this module's connection and HTTP helpers).

The installed ``hpctl`` is this client again in C (engine/cli/hpctl.c: no Python start for a
verb the daemon runs); it hands everything else, unchanged, to the Python ``hpctl``
(scripts/hpctl-py), which runs this module as before. Keep the two clients' protocol alike
(tests/engine/unit/test_cli_client.py compares their requests).

Everything else runs in-process (``cp``, terminals ...), as does every
verb when there is no daemon, when it serves another root or instance, when it is older and
lacks the endpoint, or with ``HOSTPANEL_CLI_DAEMON=0``.

The request's body (:data:`CONTENT_TYPE`) is NUL-separated: the caller's working directory,
its ``HOSTPANEL_ROOT=``/``HOSTPANEL_INSTANCE=`` settings, an empty field, then the command
line. The answer (engine/dockerapi/cli.py) is a chunked stream of the Docker API's multiplexed
frames (an 8-byte header: stream, 3 zero bytes, big-endian length): stream 1 is stdout, 2
stderr (UTF-8), 3 the control messages ``container <id>`` (a foreground run's container, for
signals) and, last, ``exit <code>``. Neither side needs json (and its regular expressions):
this client's whole start is Python's own. It talks over ``_socket`` (the C module) rather than
``socket``: ``socket`` imports enum, selectors and collections, about half of the client's own
imports (tests/engine/unit/test_cli_imports.py holds the budget).
"""

from __future__ import annotations

import _socket
import os
import sys

TYPE_CHECKING = False  # not `typing`'s: this module is all a client of the daemon imports
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Sequence
    from types import FrameType
    from typing import Any

ENDPOINT = "/hostpanel/cli"
"""The operator socket's endpoint that runs a verb (engine/dockerapi/cli.py)."""

CONTENT_TYPE = "application/x-hpctl-command"
STDOUT, STDERR, CONTROL = 1, 2, 3
"""The answer's streams (frames as the Docker API multiplexes a container's output)."""

REMOTE_VERBS = frozenset(
    {"ps", "images", "inspect", "logs", "stop", "rm", "kill", "restart", "pause", "unpause", "port", "top"}
    | {"run", "build"}
)
"""Verbs that need nothing of this process but the command line and its working directory
(``run``: see args_served; ``build`` reads its context and Dockerfile relative to it)."""

NOT_SERVED = 409
"""The daemon's answer when it will not run the verb (another root, another verb): run it here."""

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
"""What a foreground run passes on to its container (as engine/cli/containers.py does)."""

CONNECT_TIMEOUT = 0.5


def daemon_socket() -> str:
    """The operator socket's path (the same rule as engine.dockerapi.default_socket)."""
    return os.environ.get("HOSTPANEL_DOCKER_SOCKET") or "/run/hostpanel/docker.sock"


def daemon_wanted() -> bool:
    """Whether to try the daemon at all: not with HOSTPANEL_CLI_DAEMON=0."""
    return os.environ.get("HOSTPANEL_CLI_DAEMON", "1") != "0"


def wants_daemon(verb: str) -> bool:
    """Whether to try the daemon for ``verb``: one of REMOTE_VERBS, and not HOSTPANEL_CLI_DAEMON=0."""
    return daemon_wanted() and verb in REMOTE_VERBS


def caller_env(values: Sequence[str]) -> list[str]:
    """``-e`` items as NAME=value; ``-e NAME`` takes this process's value (none when unset), like docker."""
    named = [item for item in values if "=" in item or item in os.environ]
    return [item if "=" in item else f"{item}={os.environ[item]}" for item in named]


def args_served(args: argparse.Namespace) -> bool:
    """Whether the parsed command line needs nothing of the calling process (its files, terminal, env)."""
    if args.command != "run":
        return args.command in REMOTE_VERBS
    local = args.interactive or args.tty or args.secret or any("=" not in item for item in args.env)
    return not local


def request_body(argv: Sequence[str]) -> bytes:
    """What the daemon needs to run ``argv`` as this process would: the caller's cwd and engine env."""
    env = [f"{k}={os.environ[k]}" for k in ("HOSTPANEL_ROOT", "HOSTPANEL_INSTANCE") if os.environ.get(k)]
    return b"\0".join(os.fsencode(field) for field in [os.getcwd(), *env, "", *argv])


def parse_request(body: bytes) -> tuple[str, dict[str, str], list[str]]:
    """The working directory, environment settings and command line of a request_body."""
    cwd, *rest = [os.fsdecode(field) for field in body.split(b"\0")]
    end = rest.index("") if "" in rest else len(rest)
    env = dict(item.partition("=")[::2] for item in rest[:end])
    return cwd, env, rest[end + 1 :]


class _Reader:
    """Buffered reads of the answer (what ``socket.makefile("rb")`` gives, without its imports)."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def readline(self) -> bytes:
        """Up to and including the next LF (less at the end of the stream)."""
        while b"\n" not in self.buffer and self._fill():
            pass
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def read(self, size: int) -> bytes:
        """``size`` bytes (less at the end of the stream)."""
        while len(self.buffer) < size and self._fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def connect() -> _socket.socket | None:
    """A connection to the operator daemon, or None when none answers on its socket."""
    path = daemon_socket()
    if not os.path.exists(path):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # a stale socket file, or a daemon we may not talk to
    sock.settimeout(None)  # `stop` and a foreground `run` take as long as they take
    return sock


def _post(sock: _socket.socket, body: bytes) -> tuple[int, dict[bytes, bytes], _Reader]:
    return request(sock, "POST", ENDPOINT, body, {"Content-Type": CONTENT_TYPE})


def request(
    sock: _socket.socket, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[bytes, bytes], _Reader]:
    """Send one HTTP/1.1 request on ``sock``; the answer's status, headers (lower-case) and reader.

    ``Connection: close`` unless ``headers`` say otherwise (an upgrade).
    """
    fields = {"Host": "hostpanel", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    sock.sendall(head.encode("utf-8", "surrogateescape") + body)
    reader = _Reader(sock)
    parts = reader.readline().split(b" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    answer = {}
    for line in iter(reader.readline, b"\r\n"):
        if not line:
            break
        name, _, value = line.partition(b":")
        answer[name.strip().lower()] = value.strip()
    return status, answer, reader


def body_chunks(headers: dict[bytes, bytes], reader: _Reader) -> Iterator[bytes]:
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


def frames(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of each multiplexed frame in the body."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while len(pending) >= 8 and len(pending) >= 8 + int.from_bytes(pending[4:8], "big"):
            size = int.from_bytes(pending[4:8], "big")
            yield pending[0], pending[8 : 8 + size]
            pending = pending[8 + size :]


def run_remote(argv: Sequence[str]) -> int | None:
    """Run ``argv`` through the daemon; its exit code, or None when it should run in-process.

    None means nothing ran: no daemon, not our engine, an older daemon. Once the daemon has
    accepted the verb its answer is final (a failure is reported, never retried here).
    """
    try:
        body = request_body(argv)
    except OSError:  # no working directory any more: the daemon could not resolve paths like we do
        return None
    sock = connect()
    if sock is None:
        return None
    previous: dict[int, Any] = {}
    try:
        status, headers, reader = _post(sock, body)
        if status in (0, 404, NOT_SERVED):
            return None
        if status != 200:
            answer = b"".join(body_chunks(headers, reader)).decode(errors="replace").strip()
            sys.stderr.write(f"hpctl: the operator daemon failed ({status}): {answer}\n")
            return 1
        for stream, payload in frames(body_chunks(headers, reader)):
            if stream in (STDOUT, STDERR):
                out = sys.stdout if stream == STDOUT else sys.stderr
                out.write(payload.decode("utf-8", "surrogateescape"))
                out.flush()
                continue
            what, _, value = payload.decode().partition(" ")
            if what == "container":
                previous = _forward_signals(argv, value)
            elif what == "exit":
                return int(value)
        sys.stderr.write("hpctl: the operator daemon closed the connection before the command ended\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # the daemon went away mid-command: say so, never run it a second time here
        sys.stderr.write(f"hpctl: lost the operator daemon ({exc}); see `hpctl ps -a` for what was done\n")
        return 1
    finally:
        if previous:
            import signal

            for signum, handler in previous.items():
                signal.signal(signum, handler)
        sock.close()


def _forward_signals(argv: Sequence[str], container: str) -> dict[int, Any]:
    """Pass SIGINT/SIGTERM/SIGHUP on to ``container`` (`hpctl kill -s SIG`, through the daemon).

    signal is imported here: its enums cost every other client's start.
    """
    import signal

    options = _global_options(argv)

    def forward(signum: int, _frame: FrameType | None) -> None:
        sock = connect()
        if sock is None:
            return
        try:
            name = signal.Signals(signum).name
            _, headers, reader = _post(sock, request_body([*options, "kill", "-s", name, container]))
            for _chunk in body_chunks(headers, reader):  # the answer ("<id>" or an error) is not shown
                pass
        except OSError:
            pass
        finally:
            sock.close()

    numbers = [getattr(signal, name) for name in FORWARDED_SIGNALS]
    return {signum: signal.signal(signum, forward) for signum in numbers}


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
