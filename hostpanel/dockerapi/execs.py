"""``docker exec`` for tenants: ``/containers/{id}/exec``, ``/exec/{id}/start``, ``/json``, ``/resize``.

An exec is a write: it needs the developer role (a viewer's certificate gets a 403 naming the
role), and its create body is checked by the engine's own :func:`engine.dockerapi.execs.parse_exec`
(``Privileged`` and a ``User`` outside the container's uid range are refused with a 403 naming
the field). The start opens the browser terminal's audit entry (``container.exec``, completed
with the exit code by the agent) and runs the process on the container's host through the
terminal's relay (:mod:`hostpanel.dockerapi.relayed`). Exec instances live in the door's memory,
each bound to its tenant: another tenant's exec id is ``No such exec instance``. A running
exec ends within seconds of its certificate's revocation or its member's demotion.
"""

from __future__ import annotations

import secrets
import socket
import threading
from dataclasses import dataclass, fields
from typing import IO, Any

from django.db import connection

from engine.dockerapi.attach import MULTIPLEXED_STREAM, RAW_STREAM
from engine.dockerapi.execs import ExecInstance, ExecTable, parse_exec
from engine.dockerapi.http import Answer, APIError, Hijack, Request, Response, Router, json_response
from engine.dockerapi.ptyexec import FIRST_OUTPUT_DELAY_SECONDS, console_size
from engine.dockerapi.streams import relay
from engine.errors import InvalidSpec
from engine.runtime.attach import parse_detach_keys
from hostpanel.deployments.models import Replica
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.lookup import find, identity_of, replica_of
from hostpanel.dockerapi.relayed import START_TIMEOUT_SECONDS, RelayedSession
from hostpanel.hosts import dispatch
from hostpanel.tenants.models import Role
from hostpanel.terminal import services as terminal

ACTION = terminal.ACTION
ACCESS_CHECK_SECONDS = 2.0
ACCESS_ENDED = "access ended: the certificate was revoked, or its member is no longer a developer"


@dataclass
class DoorExec(ExecInstance):
    """An exec instance of the door: whose it is, and its session while it runs."""

    tenant_id: int = 0
    replica_id: int = 0
    session: RelayedSession | None = None


TABLE = ExecTable()


def register(router: Router) -> None:
    """Add the exec endpoints of the tenants' door to ``router``."""
    router.add("POST", "/containers/{id}/exec", translated(create_exec))
    router.add("POST", "/exec/{id}/start", translated(start_exec))
    router.add("GET", "/exec/{id}/json", translated(inspect_exec))
    router.add("POST", "/exec/{id}/resize", translated(resize_exec))


def running_replica(name: str, replica: Replica | None) -> Replica:
    """The container's replica when it runs on a host; 409 in dockerd's words otherwise."""
    if replica is None or replica.state != Replica.State.RUNNING or replica.host is None:
        raise APIError(409, f"container {name} is not running")
    return replica


def create_exec(request: Request) -> Response:
    """``POST /containers/{id}/exec``: check the body and the role, keep the instance."""
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    identity.require(Role.DEVELOPER, "exec into a container", ACTION, container.app)
    try:
        parsed = parse_exec(request.json())
    except APIError as exc:
        if exc.status == 403:
            identity.denied(ACTION, exc.message, container.app)
        raise
    replica = running_replica(container.name, replica_of(container))
    values = {f.name: getattr(parsed, f.name) for f in fields(ExecInstance)}
    instance = DoorExec(**values, tenant_id=identity.tenant.pk, replica_id=replica.pk)
    instance.id = secrets.token_hex(32)
    instance.container_id = container.docker_id
    TABLE.add(instance)
    return json_response({"Id": instance.id}, 201)


def find_exec(identity: Identity, exec_id: str) -> DoorExec:
    """The tenant's exec ``exec_id``; another tenant's is as unknown as a made-up one."""
    instance = TABLE.get(exec_id)
    if not isinstance(instance, DoorExec) or instance.tenant_id != identity.tenant.pk:
        raise APIError(404, f"No such exec instance: {exec_id}")
    return instance


def start_exec(request: Request) -> Answer:
    """``POST /exec/{id}/start``: run it on the container's host; relay it (or detach)."""
    identity = identity_of(request)
    instance = find_exec(identity, request.params["id"])
    body = request.json()
    if not isinstance(body, dict):
        raise APIError(400, "invalid request body: expected a JSON object")
    if instance.started:
        raise APIError(409, f"exec {instance.id} has already been started")
    tty = instance.tty or bool(body.get("Tty"))
    rows, cols = console_size(body)
    try:
        detach_keys = parse_detach_keys(instance.detach_keys or request.arg("detachKeys") or "")
    except InvalidSpec as exc:
        raise APIError(400, exc.message) from None
    # the role again (it may have changed since the create) and the audit entry
    identity.require(Role.DEVELOPER, "exec into a container", ACTION)
    ticket = terminal.open_session(identity.actor, instance.replica_id, instance.spec.command)
    instance.started = True
    session = RelayedSession(ticket.host)
    try:
        dispatch.send_start_exec(
            ticket,
            reply_channel=session.channel,
            rows=rows,
            cols=cols,
            idle_seconds=terminal.idle_seconds(),
            expires=START_TIMEOUT_SECONDS,
            options={
                "tty": tty,
                "env": list(instance.spec.env),
                "user": instance.spec.user,
                "workdir": instance.spec.workdir,
                "stdin": instance.attach_stdin,
            },
        )
        instance.pid = session.wait_started(ticket.session, rows, cols)
    except BaseException:
        session.close("the exec could not start")
        raise
    instance.running, instance.session = True, session

    def finish(code: int | None) -> None:
        instance.exit_code, instance.running, instance.session = code, False, None

    if body.get("Detach"):

        def reap() -> None:
            try:
                finish(session.wait_exit())
            finally:
                session.close()

        threading.Thread(target=reap, name="docker-exec-detached", daemon=True).start()
        return Response(status=200, body=b"", content_type="")

    def ended(why: str) -> None:
        if why == "exited":
            finish(session.exit_code)
        else:  # the client left or detached: the process is ended with the session
            session.stop(f"the Docker API client {why}")
            finish(session.wait_exit(timeout=5.0))

    def run(rfile: IO[bytes], sock: socket.socket) -> None:
        over = threading.Event()
        threading.Thread(target=guard, args=(identity, session, over), name="docker-exec-guard").start()
        try:
            relay(
                session,
                rfile,
                sock,
                raw=True,  # the agent sends terminal bytes, or frames ready to forward
                stdin=instance.attach_stdin,
                detach_keys=detach_keys,
                before_close=ended,
                first_output_delay=FIRST_OUTPUT_DELAY_SECONDS,
            )
        finally:
            over.set()
            session.close()

    return Hijack(run, content_type=RAW_STREAM if tty else MULTIPLEXED_STREAM)


def guard(identity: Identity, session: RelayedSession, over: threading.Event) -> None:
    """End the session once its certificate is revoked or its member no longer a developer of
    the tenant (checked every ACCESS_CHECK_SECONDS until ``over``)."""
    try:
        while not over.wait(ACCESS_CHECK_SECONDS):
            if not identity.still_valid():
                session.stop(ACCESS_ENDED)
                return
    finally:
        connection.close()


def inspect_exec(request: Request) -> Response:
    """``GET /exec/{id}/json`` (the CLI reads the exit code here)."""
    document: dict[str, Any] = find_exec(identity_of(request), request.params["id"]).to_json()
    return json_response(document)


def resize_exec(request: Request) -> Response:
    """``POST /exec/{id}/resize``: the terminal of a running TTY exec."""
    instance = find_exec(identity_of(request), request.params["id"])
    session = instance.session
    if instance.tty and session is not None:
        rows, cols = terminal.terminal_size(request.int_arg("h") or 0, request.int_arg("w") or 0)
        session.resize(rows, cols)
    return Response(status=200, body=b"", content_type="")
