"""Business rules of live logs: where a stream's lines come from (sync, ORM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostpanel.audit.services import Actor
from hostpanel.deployments.models import Replica
from hostpanel.errors import Conflict, InvalidRequest
from hostpanel.hosts import dispatch
from hostpanel.logstream.cursors import is_valid
from hostpanel.tenants.access import require_role
from hostpanel.tenants.models import Role


@dataclass(frozen=True)
class Source:
    """The host whose agent follows a container (its layer: ``layer.host_layer``), and the
    container's name there."""

    host: str
    replica: str
    container: str


def container_source(key: str) -> Source | None:
    """Where replica ``key``'s logs come from; None while it is not placed on a host."""

    replica = Replica.objects.filter(pk=int(key)).select_related("host").first()
    if replica is None or replica.host is None:
        return None
    return Source(replica.host.name, str(replica.pk), replica.container_name)


MAX_DOWNLOAD_LINES = 100_000


def container_log_lines(
    actor: Actor, replica: Replica, tail: int, after: str | None = None
) -> dict[str, Any]:
    """A replica's log lines with cursors, fetched from its host's agent (viewer role or above).

    ``after`` (a cursor) gives the lines after it instead of the last ``tail``;
    the answer says how many were ``skipped`` (bounds) and whether the cursor was ``lost`` (rotated away).
    """

    require_role(actor, replica.app.tenant, Role.VIEWER)
    if after is not None and not is_valid(after):
        raise InvalidRequest(
            f"after: {after!r} is not a log cursor; give the cursor of the last line you have"
        )
    if replica.host is None:
        raise Conflict(f"container {replica.container_name} is not placed on a host: {replica.message}")
    answer = dispatch.fetch_log_lines(replica.pk, replica.host.queue, tail, after)
    if answer.get("error"):
        raise Conflict(f"logs of container {replica.container_name}: {answer['error']}")
    return answer


def as_text(lines: list[dict[str, Any]]) -> str:
    """Log lines as a downloadable text file: ``<time> <stream> <text>`` per line."""
    return "".join(f"{x.get('time', '')} {x.get('stream', '')} {x.get('text', '')}\n" for x in lines)
