"""`hpctl` as a thin client of the operator daemon (`hpctl docker serve`), for the quick verbs.

A whole `hpctl ps` in this process costs Python's start plus importing the engine (about a
hundred milliseconds of modules). When the operator daemon answers on its socket
(``$HOSTPANEL_DOCKER_SOCKET`` or /run/hostpanel/docker.sock) and serves the same engine root
and instance, the verbs of :data:`REMOTE_VERBS` are sent to it instead: it parses the command
line with the same parser, runs the same handler on its warm engine and returns what the
handler wrote and its exit code, so output, errors and exit codes are the ones the verb gives
in-process. Only the standard library is imported here, never the engine.

Everything else runs in-process, as does every verb when there is no daemon, when it serves
another root or instance, when it is older and lacks the endpoint, or with
``HOSTPANEL_CLI_DAEMON=0``. Verbs that stream, read local files or the terminal (``run``,
``exec``, ``logs -f``, ``build``, ``cp``, ...) always run in-process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

ENDPOINT = "/hostpanel/cli"
"""The operator socket's endpoint that runs a verb (engine/dockerapi/cli.py)."""

REMOTE_VERBS = frozenset(
    {"ps", "images", "inspect", "logs", "stop", "rm", "kill", "restart", "pause", "unpause", "port", "top"}
)
"""Verbs that only print what the engine answers: nothing local is read, nothing streams."""

STREAMING_FLAGS = frozenset({"-f", "--follow"})
"""`logs -f` follows the log until the container stops: it stays in-process."""

NOT_SERVED = 409
"""The daemon's answer when it will not run the verb (another root, another verb): run it here."""

CONNECT_TIMEOUT = 0.5


def daemon_socket() -> str:
    """The operator socket's path (the same rule as engine.dockerapi.default_socket)."""
    return os.environ.get("HOSTPANEL_DOCKER_SOCKET") or "/run/hostpanel/docker.sock"


def wants_daemon(verb: str, argv: Sequence[str]) -> bool:
    """Whether to send ``argv`` (whose verb is ``verb``) to the daemon: not with HOSTPANEL_CLI_DAEMON=0."""
    return os.environ.get("HOSTPANEL_CLI_DAEMON", "1") != "0" and served_remotely(verb, argv)


def served_remotely(verb: str | None, argv: Sequence[str]) -> bool:
    """Whether the daemon runs ``argv``: a verb of REMOTE_VERBS, and no ``logs -f``."""
    if verb not in REMOTE_VERBS:
        return False
    return not (verb == "logs" and any(a in STREAMING_FLAGS or _short_flags_with(a, "f") for a in argv))


def _short_flags_with(arg: str, letter: str) -> bool:
    return arg.startswith("-") and not arg.startswith("--") and letter in arg[1:]


def request_body(argv: Sequence[str]) -> bytes:
    """What the daemon needs to run ``argv`` as this process would: the caller's cwd and engine env."""
    env = {k: os.environ[k] for k in ("HOSTPANEL_ROOT", "HOSTPANEL_INSTANCE") if k in os.environ}
    return json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": env}).encode()


def run_remote(argv: Sequence[str]) -> int | None:
    """Run ``argv`` through the daemon; its exit code, or None when it should run in-process.

    None means nothing ran: no daemon, not our engine, an older daemon. Once the daemon has
    accepted the verb its answer is final (a failure is reported, never retried here).
    """
    path = daemon_socket()
    if not os.path.exists(path):
        return None
    body = request_body(argv)
    head = (
        f"POST {ENDPOINT} HTTP/1.1\r\nHost: hostpanel\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            return None  # a stale socket file, or a daemon we may not talk to
        sock.settimeout(None)  # `stop` waits for the container as long as it takes
        sock.sendall(head + body)
        answer = _read_all(sock)
    finally:
        sock.close()
    status, payload = _parse(answer)
    if status in (404, NOT_SERVED) or status == 0:
        return None
    if status != 200:
        message = payload.get("message", "") if isinstance(payload, dict) else ""
        sys.stderr.write(f"hpctl: the operator daemon failed: {message or status}\n")
        return 1
    sys.stdout.write(payload["stdout"])
    sys.stdout.flush()
    sys.stderr.write(payload["stderr"])
    return int(payload["code"])


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _parse(answer: bytes) -> tuple[int, Any]:
    """Status and JSON body of an HTTP/1.1 answer read to its end; status 0 if it is not one."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        return 0, None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _unchunk(body)
    try:
        return int(parts[1]), json.loads(body) if body else None
    except ValueError:
        return 0, None


def _unchunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)
