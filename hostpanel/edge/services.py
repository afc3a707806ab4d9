"""Publishing the routing table to the host agents.

Call :func:`publish_routes` after anything that changes which replicas serve an app or
which hostnames it has (a roll's switch, a domain verified or removed, a replica that
started, stopped or changed health): it rebuilds the table and, when it differs from the
last one, gives it the next generation and sends it to every up host. Calling it when
nothing changed costs one table build and sends nothing. :func:`send_routes_to` resends the
last table to one host (an agent that restarted or was down catches up).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Count, Max

from hostpanel.deployments.models import Replica
from hostpanel.edge import dispatch
from hostpanel.edge.models import PublishedRoutes
from hostpanel.edge.routes import Routes
from hostpanel.edge.table import build_routes, forget_served_hostnames
from hostpanel.hosts.models import Host

log = logging.getLogger(__name__)


def published() -> PublishedRoutes:
    """The row of the last published table (made empty, generation 0, the first time)."""
    row, _ = PublishedRoutes.objects.get_or_create(pk=1)
    return row


def publish_routes() -> None:
    """Publish the current routing table once the caller's transaction commits (now without one)."""
    forget_served_hostnames()  # this process's ask answers follow the change at once
    transaction.on_commit(_publish_now)


def _publish_now() -> int | None:
    """Build the table; if it changed, store it as the next generation and send it; that generation."""
    if build_routes().digest() == published().digest:
        return None  # nothing changed: no lock taken, nothing sent
    with transaction.atomic():
        # An UPDATE first: it takes the row's write lock (PostgreSQL) or the database's (SQLite),
        # so concurrent publishers build and number their tables one after the other.
        PublishedRoutes.objects.filter(pk=1).update(digest="")
        row = PublishedRoutes.objects.select_for_update().get(pk=1)
        routes = build_routes(row.generation + 1)
        row.generation, row.table, row.digest = routes.generation, routes.to_json(), routes.digest()
        row.save()
        up = list(Host.objects.filter(state=Host.State.UP))
        transaction.on_commit(lambda: _send(routes, up))
    log.info("routes generation %s: %s hostnames", routes.generation, len(routes.routes))
    return routes.generation


def _send(routes: Routes, hosts: list[Host]) -> None:
    table = routes.to_json()
    for host in hosts:
        dispatch.send_routes(host.queue, table)


# Per host (in an agent's process): the replicas' (count, last update) when the table was last built.
_seen: dict[int, tuple[int, Any]] = {}


def publish_routes_after_reconcile(host: Host) -> None:
    """:func:`publish_routes` if any replica on ``host`` changed since the last call for it.

    A reconcile that changed nothing (most of them) then costs one aggregate query instead
    of a table build; what else changes the table (rolls, domains, hosts going down) publishes
    by itself or through the heartbeat's catch-up.
    """
    seen = Replica.objects.filter(host=host).aggregate(n=Count("id"), last=Max("updated_at"))
    fingerprint = (seen["n"], seen["last"])
    if _seen.get(host.pk) == fingerprint:
        return
    publish_routes()
    _seen[host.pk] = fingerprint


def send_routes_to(host: Host) -> None:
    """Send the last published table to ``host`` (its agent ignores it if it has it already)."""
    row = published()
    if row.generation:
        dispatch.send_routes(host.queue, row.table)
