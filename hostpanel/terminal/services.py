"""Business rules of the terminal: who may open a shell in which container, and the audit trail.

Only members with the developer role or above in the container's tenant (and
admins, acting through a session) may exec; viewers are refused (Forbidden),
and another tenant's container, or one that does not exist, is NotFound. Each
exec session is one audit entry (action ``container.exec``): written when it
opens, with who, tenant, container, command and source address, and completed
when it ends with the exit code and why it ended: by the agent's relay, through
:func:`finish_session` (the consumer when no relay came) or
:func:`finish_host_session` (the host agent, through the internal API:
hostpanel/terminal/internal.py), one decision for both. What is typed is never
logged. Refused attempts are audited as ``denied``.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor, record
from hostpanel.deployments.models import Replica
from hostpanel.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hostpanel.hosts.models import Host
from hostpanel.tenants.access import has_role, require_role, still_valid
from hostpanel.tenants.models import Role

ACTION = "container.exec"
DEFAULT_COMMAND: tuple[str, ...] = ("/bin/sh",)
DEFAULT_IDLE_SECONDS = 30 * 60
DEFAULT_ROWS, DEFAULT_COLS = 24, 80
MAX_SIZE = 1000
STARTED = "; started"  # the end of an entry's message until the session ends


def idle_seconds() -> float:
    """How long a session may see neither input nor output before it is ended."""
    return float(getattr(settings, "HOSTPANEL_EXEC_IDLE_SECONDS", DEFAULT_IDLE_SECONDS))


def group_name(session: str) -> str:
    """The Channels group of one exec session: the agent's relay listens there for input."""
    return f"exec.{session}"


@dataclass(frozen=True)
class ExecTicket:
    """An admitted exec session: what the host agent needs to start it, and its audit entry."""

    session: str
    replica_id: int
    container_name: str
    queue: str
    command: tuple[str, ...]
    audit_id: int
    host: str = ""  # the container's host: the session's traffic is on its layer (hosts/layer.py)


def terminal_size(rows: object, cols: object) -> tuple[int, int]:
    """A window size from the client, clamped to 1..MAX_SIZE; the defaults when not numbers."""
    try:
        r, c = int(str(rows)), int(str(cols))
    except ValueError:
        return DEFAULT_ROWS, DEFAULT_COLS
    return max(1, min(r, MAX_SIZE)), max(1, min(c, MAX_SIZE))


def may_exec(actor: Actor, replica: Replica) -> bool:
    """Whether ``actor`` may open a terminal in ``replica``'s container (developer or above)."""
    return has_role(actor, replica.app.tenant, Role.DEVELOPER)


def may_continue(actor: Actor, replica_id: int) -> bool:
    """Whether an open session of ``actor`` in replica ``replica_id`` may go on, now: its user
    still active, its token (if any) not revoked, and still developer or above in the tenant."""
    fresh = still_valid(actor)
    replica = Replica.objects.filter(pk=replica_id).select_related("app__tenant").first()
    return fresh is not None and replica is not None and may_exec(fresh, replica)


def open_session(actor: Actor, replica_id: int, command: tuple[str, ...] = DEFAULT_COMMAND) -> ExecTicket:
    """Admit ``actor`` to a terminal in replica ``replica_id`` and open its audit entry.

    Raises NotFound (no such container, or another tenant's), Forbidden (a
    viewer), Conflict (not placed on a host) or InvalidRequest (no command);
    a refusal is audited as denied, and nothing else changes.
    """
    replica = Replica.objects.filter(pk=replica_id).select_related("app__tenant", "host").first()
    tenant = replica.app.tenant if replica is not None else None
    try:
        if not command or not all(command):
            raise InvalidRequest("exec needs a command, like /bin/sh")
        if replica is None or tenant is None:
            raise NotFound(f"no container {replica_id}")
        if not getattr(actor.user, "is_authenticated", False):
            raise NotFound(f"no container {replica_id}")
        try:
            require_role(actor, tenant, Role.DEVELOPER)
        except NotFound as exc:
            raise NotFound(f"no container {replica_id}") from exc
        if replica.host is None:
            raise Conflict(
                f"container {replica.container_name} is not placed on a host yet; try again when it runs"
            )
    except (NotFound, Forbidden, Conflict, InvalidRequest) as exc:
        if actor.user is not None and getattr(actor.user, "is_authenticated", False):
            # an outsider's attempt is not shown to the tenant it probed
            visible_tenant = tenant if isinstance(exc, Forbidden | Conflict) else None
            record(
                actor,
                ACTION,
                tenant=visible_tenant,
                obj=replica if visible_tenant is not None else None,
                result=AuditLog.Result.DENIED,
                message=str(exc),
            )
        raise
    entry = record(
        actor,
        ACTION,
        tenant=tenant,
        obj=replica,
        message=f"command: {shlex.join(command)}{STARTED}",
    )
    return ExecTicket(
        session=secrets.token_hex(16),
        replica_id=replica.pk,
        container_name=replica.container_name,
        queue=replica.host.queue,
        command=command,
        audit_id=entry.pk,
        host=replica.host.name,
    )


def finish_session(audit_id: int, exit_code: int | None, reason: str) -> bool:
    """Complete the audit entry of a session that ended: its exit code (None: it never ran) and why.

    Only the first call for an entry counts (the agent and the consumer may both report an end):
    True if this one did.
    """
    return _complete(AuditLog.objects.filter(pk=audit_id), exit_code, reason)


def finish_host_session(host: Host, audit_id: int, exit_code: int | None, reason: str) -> None:
    """What an enrolled host's agent reports of a session it ran (``POST /internal/v1/exec/<id>/
    finished``): completes the entry as :func:`finish_session` does, only if it is an exec session's
    entry of a container placed on ``host`` (else NotFound: another host's session is as unknown as
    none) that is still open (else Conflict); nothing changes otherwise."""
    entry = AuditLog.objects.filter(pk=audit_id, action=ACTION, object_type=Replica._meta.label_lower).first()
    on_host = (
        entry is not None
        and entry.object_id.isdigit()
        and Replica.objects.filter(pk=int(entry.object_id), host=host).exists()
    )
    if entry is None or not on_host:
        raise NotFound(f"no exec session {audit_id} on host {host.name}")
    if not _complete(AuditLog.objects.filter(pk=entry.pk), exit_code, reason):
        raise Conflict(f"exec session {audit_id} has already ended")


def _complete(entries: QuerySet[AuditLog], exit_code: int | None, reason: str) -> bool:
    """Complete the one open exec entry of ``entries`` (in one UPDATE: a second report finds none)."""
    entry = entries.filter(action=ACTION, message__endswith=STARTED).first()
    if entry is None:
        return False
    command = entry.message.removesuffix(STARTED)  # the command itself may hold "; "
    if exit_code is None:
        result, outcome = AuditLog.Result.FAILED, f"failed: {reason}"
    else:
        result, outcome = AuditLog.Result.OK, f"exit code {exit_code} ({reason})"
    message = f"{command}; {outcome}"[:2000]
    updated = AuditLog.objects.filter(pk=entry.pk, message=entry.message).update(
        result=result, message=message
    )
    return bool(updated)
