"""``GET /events`` for tenants: the tenant's audit log as Docker's event stream.

The smallest honest design: every write through the door (and through the panel) is already
in the audit log, scoped to its tenant, so the door reads the successful entries of the
identity's tenant and shows those it can name in Docker's terms: containers (the panel's apps:
create, start, stop, restart, destroy), images (tag, delete, pull, load) and volumes (create,
destroy): see ``ACTIONS``. What the engine does on its own
(a process that exits, a restart by policy, health changes) is not in the audit log and is not
shown here; the engine journals on the hosts (``engine/events.py``) hold those for the operator.

``since``/``until``/``filters`` are the operator socket's (:mod:`engine.dockerapi.events`);
without ``until`` the stream follows new entries (polled) until the client leaves or its
certificate stops being valid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from engine.dockerapi.events import docker_event, parse_window
from engine.dockerapi.http import APIError, Request, Router, Stream
from engine.errors import InvalidSpec
from engine.events import Event, EventFilter
from hostpanel.audit.models import AuditLog
from hostpanel.dockerapi.containers import translated
from hostpanel.dockerapi.identity import Identity
from hostpanel.dockerapi.lookup import client_gone, identity_of
from hostpanel.dockerapi.models import DockerContainer

# audit action -> (Docker event type, Docker action)
ACTIONS = {
    "app.create": ("container", "create"),
    "app.start": ("container", "start"),
    "app.stop": ("container", "stop"),
    "app.restart": ("container", "restart"),
    "app.delete": ("container", "destroy"),
    "image.tag": ("image", "tag"),
    "image.delete": ("image", "delete"),
    "image.pull": ("image", "pull"),
    "image.upload": ("image", "load"),
    "volume.create": ("volume", "create"),
    "volume.delete": ("volume", "destroy"),
}
POLL_SECONDS = 0.5


def register(router: Router) -> None:
    """Add ``GET /events`` of the tenants' door to ``router``."""
    router.add("GET", "/events", translated(events))


def event_of(entry: AuditLog, containers: dict[str, DockerContainer]) -> Event | None:
    """An audit entry as a Docker event (None for an action Docker has no event for)."""
    kind = ACTIONS.get(entry.action)
    if kind is None:
        return None
    type_, action = kind
    name = entry.object_repr.split("/", 1)[-1]  # "<tenant>/<name>" of apps and volumes
    object_id = name
    attributes = {"name": name}
    if type_ == "container":
        container = containers.get(entry.object_id)
        if container is not None:
            object_id, attributes["name"] = container.docker_id, container.name
            attributes["image"] = str(container.config.get("Image") or "")
    elif type_ == "image":
        object_id = attributes["name"] = entry.object_repr
    when = int(entry.created_at.timestamp() * 1_000_000_000)
    return Event(type_, action, object_id, attributes, tenant="", time_nano=when)


def events(request: Request) -> Stream:
    """``GET /events?since=&until=&filters=``."""
    identity = identity_of(request)
    start, end = parse_window(request.arg("since"), request.arg("until"))
    filters = request.json_arg("filters")
    if filters is not None and not isinstance(filters, dict):
        raise APIError(400, 'filters must be a JSON object such as {"type": ["container"]}')
    try:
        chosen = EventFilter.parse(filters)
    except InvalidSpec as exc:
        raise APIError(400, exc.message) from None

    def chunks() -> Iterator[bytes]:
        for event in tenant_events(identity, start, end, lambda: client_gone(request.connection)):
            if chosen.matches(event):
                yield json.dumps(docker_event(event)).encode() + b"\n"

    return Stream(chunks())


def _moment(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1_000_000_000, tz=UTC)


def tenant_events(
    identity: Identity, start: int | None, end: int | None, gone: Callable[[], bool]
) -> Iterator[Event]:
    """The tenant's events from ``start`` to ``end`` (ns); without ``end``, following new ones."""
    rows = AuditLog.objects.filter(tenant=identity.tenant, result=AuditLog.Result.OK, action__in=ACTIONS)
    if start is not None:
        rows = rows.filter(created_at__gte=_moment(start))
    last = 0
    while True:
        page = rows.filter(pk__gt=last).order_by("pk")
        if end is not None:
            page = page.filter(created_at__lte=_moment(end))
        entries = list(page[:500])
        ids = [e.object_id for e in entries if e.action.startswith("app.")]
        containers = {
            str(c.app_id): c for c in DockerContainer.objects.filter(tenant=identity.tenant, app_id__in=ids)
        }
        for entry in entries:
            last = entry.pk
            event = event_of(entry, containers)
            if event is not None:
                yield event
        if len(entries) == 500:
            continue
        if end is not None and time.time_ns() >= end:
            return
        if gone() or not identity.still_valid():
            return
        time.sleep(POLL_SECONDS)
