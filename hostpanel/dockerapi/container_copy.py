"""``docker cp`` for tenants: ``GET|HEAD|PUT /containers/{id}/archive`` on the container's host.

A copy needs the developer role, both ways (reading a container's files can read its secrets).
The container's host agent does the copy with the engine's copy functions (paths resolved inside
the container's root, archive members checked: hostpanel/agent/archive.py); the bytes travel
over the host's layer in chunks, at most a window ahead of their acks both ways
(:mod:`hostpanel.dockerapi.relayed`).
The stat header is the engine's (:func:`engine.dockerapi.container_copy.path_stat_header`).
Every copy is in the audit log (``container.copy``): which way, which path, how it ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.dockerapi.container_copy import STAT_HEADER, TAR, path_stat_header
from engine.dockerapi.http import APIError, Request, Response, Router, Stream, no_content
from engine.runtime.copy import PathStat
from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import record
from hostpanel.deployments.models import Replica
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.lookup import find, identity_of, replica_of
from hostpanel.dockerapi.models import DockerContainer
from hostpanel.dockerapi.relayed import STALL_SECONDS, START_TIMEOUT_SECONDS, RelayedSession, agent_error
from hostpanel.hosts import dispatch
from hostpanel.tenants.models import Role

ACTION = "container.copy"
CHUNK = 64 * 1024


def register(router: Router) -> None:
    """Add the archive endpoints (``HEAD`` is served by the ``GET`` route) to the tenants' door."""
    router.add("GET", "/containers/{id}/archive", translated(get_archive))
    router.add("PUT", "/containers/{id}/archive", translated(put_archive))


def _admit(request: Request, what: str) -> tuple[Identity, DockerContainer, Replica, str]:
    identity = identity_of(request)
    container = find(identity, request.params["id"])
    identity.require(Role.DEVELOPER, what, ACTION, container.app)
    path = request.arg("path")
    if not path:
        raise APIError(400, "the path parameter is required: the path inside the container, like /etc/hosts")
    replica = replica_of(container)
    if replica is None or replica.host is None:
        raise APIError(409, f"container {container.name} is not on a host yet; start it first")
    return identity, container, replica, path


def _audit(identity: Identity, container: DockerContainer, message: str, ok: bool) -> None:
    result = AuditLog.Result.OK if ok else AuditLog.Result.FAILED
    record(identity.actor, ACTION, tenant=identity.tenant, obj=container.app, result=result, message=message)


def _start(replica: Replica, session: RelayedSession, path: str, **options: Any) -> dict[str, Any]:
    """Ask the container's host to copy; its first answer (an error is raised as the answer)."""
    assert replica.host is not None
    dispatch.send_start_copy(
        replica.host.queue,
        expires=START_TIMEOUT_SECONDS,
        container_name=replica.container_name,
        reply_channel=session.channel,
        path=path,
        **options,
    )
    first = session.next_message()
    if first.get("type") == "copy.error":
        raise agent_error(first)
    return first


def get_archive(request: Request) -> Response | Stream:
    """``GET`` (the tar of a path) and ``HEAD`` (its stat header only) of a container's path."""
    identity, container, replica, path = _admit(request, "copying from a container")
    head = request.method == "HEAD"
    assert replica.host is not None
    session = RelayedSession(replica.host.name)
    try:
        first = _start(replica, session, path, stat_only=head)
        if first.get("type") != "copy.stat":
            raise APIError(500, f"the container's host answered {first.get('type')!r} to a copy")
        headers = {STAT_HEADER: path_stat_header(PathStat(**first["stat"]))}
        acks_to = str(first.get("channel") or "")  # where the host hears what went out
    except BaseException:
        session.close()
        raise
    if head:
        session.close()
        return Response(status=200, content_type="", headers=headers)

    def chunks() -> Iterator[bytes]:
        outcome = "the client went away"
        try:
            while True:
                message = session.next_message(STALL_SECONDS)
                kind = message.get("type")
                if kind == "copy.data" and isinstance(message.get("data"), bytes):
                    if acks_to:
                        session.took(message["data"], acks_to)
                    yield message["data"]
                elif kind == "copy.done":
                    outcome = "done"
                    return
                elif kind == "copy.error":
                    outcome = f"failed: {message.get('message')}"
                    return  # the headers are sent: a cut-off tar is how the client learns
        except APIError as exc:
            outcome = f"failed: {exc.message}"
        finally:
            session.close()
            _audit(identity, container, f"from {container.name}:{path}; {outcome}", outcome == "done")

    return Stream(chunks(), content_type=TAR, headers=headers)


def put_archive(request: Request) -> Response:
    """``PUT``: extract the request's tar into a directory of the container."""
    identity, container, replica, path = _admit(request, "copying into a container")
    assert replica.host is not None
    session = RelayedSession(replica.host.name)
    try:
        ready = _start(
            replica,
            session,
            path,
            upload=True,
            keep_owners=request.flag("copyUIDGID"),
            no_overwrite_dir_non_dir=request.flag("noOverwriteDirNonDir"),
        )
        target = str(ready.get("channel"))
        for chunk in request.body_chunks():
            if not session.messages.empty():  # the host gave up early (a bad path, a bad member)
                break
            for start in range(0, len(chunk), CHUNK):
                session.send_to(target, {"type": "copy.data", "data": chunk[start : start + CHUNK]})
        else:
            session.send_to(target, {"type": "copy.end"})
        done = session.next_message(STALL_SECONDS)
        if done.get("type") != "copy.done":
            raise agent_error(done)
    except APIError as exc:
        _audit(identity, container, f"to {container.name}:{path}; failed: {exc.message}", False)
        raise
    finally:
        session.close()
    _audit(identity, container, f"to {container.name}:{path}; {done.get('count', 0)} members written", True)
    return no_content(200)
