"""`hpctl exec` through the operator daemon, with the Docker API's own exec endpoints.

The docker CLI's way: ``POST /containers/{id}/exec`` creates the exec, ``POST /exec/{id}/start``
with ``Connection: Upgrade`` hijacks the connection and streams the process's stdout and
stderr as multiplexed frames (8-byte header: stream, 3 zero bytes, big-endian length) until
it exits, then ``GET /exec/{id}/json`` gives its exit code. Output is written as bytes, frame
by frame, to this process's stdout and stderr (file descriptors 1 and 2, unbuffered). With
``-i`` this process's stdin goes to the exec on the same connection, half-closed at its end
(the daemon then closes the exec's stdin).

The create request names this process's engine root and instance
(:data:`ROOT_HEADER`, :data:`INSTANCE_HEADER`); a daemon serving another engine refuses it.
Whenever nothing has run yet (no daemon, another engine, an older daemon, the create or start
refused: a missing or stopped container, a bad option) this returns None and `hpctl exec` runs
in-process, so its errors are word for word the in-process ones. ``-t`` (a terminal) and
command lines this small parser does not read plainly always run in-process.

Like engine/cli/remote.py, only ``_socket`` and ``_thread`` (C modules) are imported: no json
(the bodies are written and read by hand), no threading, no socket.
"""

from __future__ import annotations

import os
import sys

from engine.cli import remote

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Iterator, Sequence

ROOT_HEADER = "X-HostPanel-Root"
INSTANCE_HEADER = "X-HostPanel-Instance"
"""The caller's engine root (absolute; empty: the default) and instance (empty: the default)."""

_FLAGS = {"-i": "interactive", "--interactive": "interactive", "-t": "tty", "--tty": "tty"}
_VALUED = {"-e": "env", "--env": "env", "-u": "user", "--user": "user", "-w": "workdir"}
_VALUED |= {"--workdir": "workdir", "--detach-keys": "detach_keys"}


class ExecLine:
    """What `hpctl [--root R] [--instance I] exec [options] CONTAINER CMD...` asks for."""

    def __init__(self) -> None:
        self.root = ""
        self.instance = ""
        self.interactive = False
        self.tty = False
        self.env: list[str] = []
        self.user = ""
        self.workdir = ""
        self.detach_keys = ""
        self.container = ""
        self.cmd: list[str] = []


def parse_exec_line(argv: Sequence[str]) -> ExecLine | None:
    """``argv`` read as argparse reads it, or None when it is not plain (then argparse decides)."""
    line = ExecLine()
    args = list(argv)
    while args and args[0] != "exec":
        name, eq, value = args.pop(0).partition("=")
        if name not in ("--root", "--instance") or (not eq and not args):
            return None
        setattr(line, name[2:], value if eq else args.pop(0))
    if not args:
        return None
    args.pop(0)
    while args and args[0].startswith("-"):
        arg = args.pop(0)
        if arg in ("-it", "-ti"):
            line.interactive = line.tty = True
            continue
        if arg in _FLAGS:
            setattr(line, _FLAGS[arg], True)
            continue
        name, eq, value = (
            arg.partition("=") if arg.startswith("--") or arg[2:3] == "=" else (arg[:2], arg[2:], arg[2:])
        )
        if name not in _VALUED or (not eq and not args):
            return None  # an abbreviation, a combined flag, --help: argparse's to read
        value = value if eq else args.pop(0)
        if _VALUED[name] == "env":
            line.env.append(value)
        else:
            setattr(line, _VALUED[name], value)
    if len(args) < 2 or args[1] == "--":
        return None  # no command (argparse's error) or `--` (argparse drops it)
    line.container, line.cmd = args[0], args[1:]
    return line


def _json_string(text: str) -> str:
    """``text`` as a JSON string (UTF-8 left as it is; ``json`` costs the client its start)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def create_body(line: ExecLine) -> bytes:
    """The ``POST /containers/{id}/exec`` body; UnicodeEncodeError for an argument that is not UTF-8."""
    fields = {
        "AttachStdin": "true" if line.interactive else "false",
        "AttachStdout": "true",
        "AttachStderr": "true",
        "Tty": "false",
        "Cmd": "[" + ", ".join(_json_string(c) for c in line.cmd) + "]",
        "Env": "[" + ", ".join(_json_string(e) for e in remote.caller_env(line.env)) + "]",
    }
    if line.user:
        fields["User"] = _json_string(line.user)
    if line.workdir:
        fields["WorkingDir"] = _json_string(line.workdir)
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


def _json_field(answer: bytes, name: bytes) -> bytes:
    """The raw value of top-level ``"name": value`` in a flat JSON answer (what we ask of it)."""
    start = answer.find(b'"' + name + b'":')
    if start < 0:
        return b""
    value = answer[start + len(name) + 3 :].lstrip()
    end = min((i for i in (value.find(b","), value.find(b"}")) if i >= 0), default=len(value))
    return value[:end].strip().strip(b'"')


def _engine_headers(line: ExecLine) -> dict[str, str] | None:
    root = line.root or os.environ.get("HOSTPANEL_ROOT", "")
    try:
        root = os.path.join(os.getcwd(), root) if root else ""
    except OSError:
        return None  # no working directory: the daemon could not resolve a relative root as we do
    instance = line.instance or os.environ.get("HOSTPANEL_INSTANCE", "")
    if any(c in text for text in (root, instance) for c in "\r\n"):
        return None
    return {ROOT_HEADER: root, INSTANCE_HEADER: instance}


def _call(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a connection of its own: status and body (0 when no daemon answers)."""
    sock = remote.connect()
    if sock is None:
        return 0, b""
    try:
        status, answer_headers, reader = remote.request(sock, method, path, body, headers)
        return status, b"".join(remote.body_chunks(answer_headers, reader))
    finally:
        sock.close()


def _raw(reader: remote._Reader) -> Iterator[bytes]:
    """The hijacked connection's bytes until the daemon closes its side."""
    if reader.buffer:
        yield reader.buffer
        reader.buffer = b""
    while data := reader.sock.recv(65536):
        yield data


def _feed_stdin(sock: _socket.socket) -> None:
    """This process's stdin to the exec, then a half-close (its end of input)."""
    import _socket

    try:
        while data := os.read(0, 65536):
            sock.sendall(data)
    except OSError:
        pass
    try:  # noqa: SIM105 (contextlib's imports cost every client's start)
        sock.shutdown(_socket.SHUT_WR)
    except OSError:
        pass


PIPE_GONE = 141
"""The exit code when our output's reader left (``| head``): a shell's for a writer killed by SIGPIPE."""


def _write_all(fd: int, data: bytes) -> bool:
    """``data`` to ``fd`` as it is (bytes, unbuffered); False once its reader has gone."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        return False
    return True


def run_exec(argv: Sequence[str]) -> int | None:
    """Run a non-terminal `hpctl exec` through the daemon: its exit code, or None to run it in-process."""
    line = parse_exec_line(argv)
    if line is None or line.tty:
        return None
    headers = _engine_headers(line)
    if headers is None:
        return None
    try:
        body = create_body(line)
    except UnicodeEncodeError:
        return None
    container = "".join(c if c.isalnum() or c in "_.-" else f"%{ord(c):02X}" for c in line.container)
    status, answer = _call("POST", f"/containers/{container}/exec", body, headers | _JSON)
    exec_id = _json_field(answer, b"Id").decode()
    if status != 201 or not exec_id.isalnum():
        return None  # nothing ran: no daemon, another engine, a missing container, a refused option
    sock = remote.connect()
    if sock is None:
        return None
    try:
        start = b'{"Detach": false, "Tty": false}'
        status, _, reader = remote.request(sock, "POST", f"/exec/{exec_id}/start", start, _JSON | _UPGRADE)
        if status not in (101, 200):
            return None  # the container stopped in between: nothing ran
        if line.interactive:
            import _thread

            _thread.start_new_thread(_feed_stdin, (sock,))
        for stream, payload in remote.frames(_raw(reader)):
            if not _write_all(1 if stream == remote.STDOUT else 2, payload):
                return PIPE_GONE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        sys.stderr.write(f"hpctl: lost the operator daemon ({exc}) while exec {line.container} ran\n")
        return 1
    finally:
        sock.close()
    status, answer = _call("GET", f"/exec/{exec_id}/json")
    code = _json_field(answer, b"ExitCode")
    if status != 200 or not code.lstrip(b"-").isdigit():
        sys.stderr.write(f"hpctl: the operator daemon did not tell the exit code of exec {exec_id}\n")
        return 1
    return int(code)


_JSON = {"Content-Type": "application/json"}
_UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}
