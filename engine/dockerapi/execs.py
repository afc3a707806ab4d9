"""Exec endpoints: ``POST /containers/{id}/exec``, ``/exec/{id}/start``, ``/exec/{id}/json``, resize.

An exec instance lives in the daemon's memory (as in dockerd) until its container goes. A
non-TTY start is served here: the process's stdout and stderr come back multiplexed on the
hijacked connection, the client's stdin (``-i``) goes to the process, and the exit code is
kept for ``/exec/{id}/json``. TTY execs go through :mod:`engine.dockerapi.interactive`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import socket
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from engine.dockerapi import interactive
from engine.dockerapi.cli import check_caller_engine
from engine.dockerapi.create import check_user
from engine.dockerapi.http import (
    STDERR,
    STDOUT,
    Answer,
    APIError,
    Hijack,
    Request,
    Response,
    Router,
    frame,
    json_response,
)
from engine.dockerapi.lifecycle import Lifecycle
from engine.errors import EngineError
from engine.runtime.model import Container, ExecSpec

if TYPE_CHECKING:
    from engine.engine import Engine

MAX_EXECS = 10_000
_EXEC_FIELDS = frozenset(
    {
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "DetachKeys",
        "Tty",
        "Env",
        "Cmd",
        "Privileged",
        "User",
        "WorkingDir",
        "ConsoleSize",
        "Container",  # docker-py repeats the container's id
        "Detach",  # `docker exec -d` says it in the create body too; the start body's decides
    }
)


@dataclass
class ExecInstance:
    """One exec: what to run, in which container, and how it went."""

    id: str
    container_id: str
    spec: ExecSpec
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    detach_keys: str = ""
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0

    def to_json(self) -> dict[str, Any]:
        """``GET /exec/{id}/json``."""
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty,
                "entrypoint": self.spec.command[0],
                "arguments": list(self.spec.command[1:]),
                "privileged": False,
                "user": self.spec.user or "",
            },
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


class ExecTable:
    """The daemon's exec instances by id (bounded: the oldest finished ones go first)."""

    def __init__(self) -> None:
        self._items: dict[str, ExecInstance] = {}
        self._lock = threading.Lock()

    def add(self, instance: ExecInstance) -> None:
        """Keep ``instance``; past :data:`MAX_EXECS`, the oldest finished ones are forgotten."""
        with self._lock:
            if len(self._items) >= MAX_EXECS:
                for key in [k for k, v in self._items.items() if not v.running][: MAX_EXECS // 10 or 1]:
                    del self._items[key]
            self._items[instance.id] = instance

    def get(self, exec_id: str) -> ExecInstance:
        """The instance with id ``exec_id``, or a 404 ``No such exec instance``."""
        with self._lock:
            instance = self._items.get(exec_id)
        if instance is None:
            raise APIError(404, f"No such exec instance: {exec_id}")
        return instance

    def of_container(self, cid: str) -> list[str]:
        """Ids of the running execs in container ``cid`` (inspect's ``ExecIDs``)."""
        with self._lock:
            return [k for k, v in self._items.items() if v.container_id == cid and v.running]


def parse_exec(body: Any) -> ExecInstance:
    """An exec create body as an instance (no id or container yet); 403/400 naming a bad field."""
    if not isinstance(body, dict):
        raise APIError(400, "invalid request body: expected a JSON object")
    for key, value in body.items():
        if key == "Privileged" and value:
            raise APIError(
                403, "Privileged is refused: privileged containers reach the host's devices and kernel"
            )
        if key not in _EXEC_FIELDS and value not in (None, False, 0, "", [], {}):
            raise APIError(403, f"{key} is refused: this field is not supported by HostPanel; remove it")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
        raise APIError(400, "No exec command specified")
    env = body.get("Env") or []
    if not isinstance(env, list) or not all(
        isinstance(e, str) and "=" in e and not e.startswith("=") for e in env
    ):
        raise APIError(400, "invalid Env: expected a list of NAME=value strings")
    user = body.get("User") or None
    if user is not None:
        if not isinstance(user, str):
            raise APIError(400, "invalid User: expected a string")
        check_user(user)
    workdir = body.get("WorkingDir") or None
    if workdir is not None and not isinstance(workdir, str):
        raise APIError(400, "invalid WorkingDir: expected a string")
    return ExecInstance(
        id="",
        container_id="",
        spec=ExecSpec(command=tuple(cmd), env=tuple(env), user=user, workdir=workdir),
        tty=bool(body.get("Tty")),
        attach_stdin=bool(body.get("AttachStdin")),
        attach_stdout=bool(body.get("AttachStdout", True)),
        attach_stderr=bool(body.get("AttachStderr", True)),
        detach_keys=str(body.get("DetachKeys") or ""),
    )


def register(
    router: Router, engine: Engine, lifecycle: Lifecycle, table: ExecTable | None = None
) -> ExecTable:
    """Add the exec endpoints for ``engine`` to ``router``."""
    execs = table or ExecTable()

    @router.route("POST", "/containers/{id}/exec")
    def create(request: Request) -> Response:
        check_caller_engine(engine, request)  # `hpctl exec` names its engine; docker clients do not
        ref = request.params["id"]
        container = lifecycle.find(ref)
        instance = parse_exec(request.json())
        _require_running(container)
        instance.id = secrets.token_hex(32)
        instance.container_id = container.id
        execs.add(instance)
        return json_response({"Id": instance.id}, 201)

    @router.route("POST", "/exec/{id}/start")
    def start(request: Request) -> Answer:
        instance = execs.get(request.params["id"])
        body = request.json()
        if not isinstance(body, dict):
            raise APIError(400, "invalid request body: expected a JSON object")
        if instance.started:
            raise APIError(409, f"exec {instance.id} has already been started")
        if instance.tty or body.get("Tty"):
            return interactive.exec_start(engine, instance, request)
        _require_running(lifecycle.find(instance.container_id))
        instance.started = True
        if body.get("Detach"):
            proc = _spawn(engine, instance, stdin=False)
            threading.Thread(target=_reap, args=(instance, proc), daemon=True).start()
            return Response(status=200, body=b"", content_type="")
        proc = _spawn(engine, instance, stdin=instance.attach_stdin)
        return Hijack(lambda rfile, sock: _pump(instance, proc, rfile, sock))

    @router.route("GET", "/exec/{id}/json")
    def inspect(request: Request) -> Response:
        return json_response(execs.get(request.params["id"]).to_json())

    @router.route("POST", "/exec/{id}/resize")
    def resize(request: Request) -> Response:
        instance = execs.get(request.params["id"])
        if instance.tty:
            interactive.exec_resize(engine, instance, request.int_arg("h") or 0, request.int_arg("w") or 0)
        return Response(status=200, body=b"", content_type="")

    return execs


def _spawn(engine: Engine, instance: ExecInstance, *, stdin: bool) -> subprocess.Popen[bytes]:
    try:
        proc = engine.exec(
            instance.container_id,
            instance.spec,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except EngineError:
        instance.started = False
        raise
    instance.running, instance.pid = True, proc.pid
    return proc


def _reap(instance: ExecInstance, proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                while pipe.read(65536):
                    pass
    instance.exit_code = _exit_code(proc.wait())
    instance.running = False


def _exit_code(returncode: int) -> int:
    """crun exec's status; a process killed by a signal is 128+N, as the shell and dockerd say."""
    return 128 - returncode if returncode < 0 else returncode


def _pump(
    instance: ExecInstance, proc: subprocess.Popen[bytes], rfile: IO[bytes], sock: socket.socket
) -> None:
    """Stream the exec's output as frames until it exits; the client's input goes to its stdin."""
    if proc.stdin is not None:
        threading.Thread(target=_feed_stdin, args=(rfile, proc.stdin), daemon=True).start()
    streams = {}
    if proc.stdout is not None:
        streams[proc.stdout.fileno()] = STDOUT
    if proc.stderr is not None:
        streams[proc.stderr.fileno()] = STDERR
    wanted = {STDOUT: instance.attach_stdout, STDERR: instance.attach_stderr}
    client_gone = False
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while streams:
            for key, _ in selector.select():
                fd = int(key.fd)
                data = os.read(fd, 65536)
                if not data:
                    selector.unregister(fd)
                    del streams[fd]
                    continue
                if wanted[streams[fd]] and not client_gone:
                    try:
                        sock.sendall(frame(streams[fd], data))
                    except OSError:
                        client_gone = True
    instance.exit_code = _exit_code(proc.wait())
    instance.running = False
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _feed_stdin(rfile: IO[bytes], stdin: IO[bytes]) -> None:
    try:
        while True:
            data = rfile.read1(65536) if hasattr(rfile, "read1") else rfile.read(65536)
            if not data:
                break
            stdin.write(data)
            stdin.flush()
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            stdin.close()


def _require_running(container: Container) -> None:
    """A 409 in dockerd's words unless ``container`` runs (a paused one is frozen: unpause it first)."""
    if container.status == "paused":
        raise APIError(409, f"Container {container.id} is paused, unpause the container before exec")
    if container.status != "running":
        raise APIError(409, f"container {container.id} is not running")
