"""The scheduler: which host runs each replica, with which published ports.

Replicas go on hosts that are up, active (not cordoned, draining or evacuated) and have room
(requested CPU and memory against capacity), spreading one app's replicas across hosts. The
hosts app below knows the machines, their heartbeats and their lifecycle; it tells this module
what happens to them through hosts/signals.py (connected in DeploymentsConfig.ready): room
changed (place pending replicas), a host went down (its stateless replicas move), a heartbeat
to fence (what is placed on the host).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum

from hostpanel.deployments.models import App, Replica
from hostpanel.errors import NoCapacity
from hostpanel.hosts import lifecycle
from hostpanel.hosts.models import Host
from hostpanel.hosts.services import reconcile_hosts
from hostpanel.tenants.locks import require_atomic

if TYPE_CHECKING:
    from hostpanel.tenants.models import Tenant

log = logging.getLogger(__name__)


def reconcile_tenant_hosts(tenant: Tenant) -> None:
    """After the current transaction commits, the hosts running the tenant's replicas reconcile."""
    reconcile_hosts(Replica.objects.filter(app__tenant=tenant).values_list("host_id", flat=True))


# ---- taking replicas off a host --------------------------------------------------------
def evict(host: Host, reason: str, replica_ids: Iterable[int] | None = None) -> None:
    """Take the host's replicas (or those of ``replica_ids``) off it, pending a new placement."""
    replicas = Replica.objects.filter(host=host)
    if replica_ids is not None:
        replicas = replicas.filter(pk__in=list(replica_ids))
    replicas.update(
        host=None, state=Replica.State.PENDING, engine_id="", ports=[], message=reason, next_restart_at=None
    )


def pinned_replica_ids(host: Host) -> set[int]:
    """The host's replicas that cannot move: they mount volumes, whose data lives on its disk."""
    return {
        pk
        for pk, volumes in Replica.objects.filter(host=host).values_list("pk", "release__volumes")
        if volumes
    }


def movable_left(host: Host) -> int:
    """How many of the host's replicas could move (they mount no volume) and are still on it."""
    return Replica.objects.filter(host=host).exclude(pk__in=pinned_replica_ids(host)).count()


def host_went_down(sender: object, host: Host, **kwargs: object) -> None:
    """hosts.signals.host_down: a dead host's stateless replicas move (placed by the next
    :func:`schedule_pending`), its pinned ones wait for it, shown as host down."""
    pinned = pinned_replica_ids(host)
    movable = Replica.objects.filter(host=host).exclude(pk__in=pinned).values_list("pk", flat=True)
    evict(host, f"host {host.name} went down", list(movable))
    if not lifecycle.out_of_service(host.lifecycle):  # an evacuated host's are stopped, as they were
        Replica.objects.filter(pk__in=pinned).update(
            state=Replica.State.HOST_DOWN,
            ready=False,
            message=f"host {host.name} is down; this replica mounts volumes, whose data lives on that "
            "host's disk, so it waits for the host to come back",
        )


def placed_on_host(sender: object, host_id: int, **kwargs: object) -> dict[str, int]:
    """hosts.signals.placements_asked: {replica id: generation} of the replicas placed on the host."""
    return {
        str(pk): generation
        for pk, generation in Replica.objects.filter(host_id=host_id).values_list("pk", "generation")
    }


# ---- published ports ------------------------------------------------------------------
def port_range() -> range:
    low, _, high = settings.HOSTPANEL_PORT_RANGE.partition("-")
    return range(int(low), int(high) + 1)


def allocate_ports(replica: Replica, host: Host) -> list[dict[str, Any]]:
    """Host ports for the replica's published container ports, unused by other replicas on ``host``.

    Keeps the ports the replica already has on this host for the same container ports.
    """

    wanted = replica.release.ports
    if not wanted:
        return []
    used = {
        (p["protocol"], p["host_port"])
        for ports in Replica.objects.filter(host=host).exclude(pk=replica.pk).values_list("ports", flat=True)
        for p in ports
    }
    keep = (
        {(p["protocol"], p["container_port"]): p["host_port"] for p in replica.ports}
        if replica.host_id == host.pk
        else {}
    )
    out = []
    candidates = iter(port_range())
    for want in wanted:
        protocol = want.get("protocol", "tcp")
        host_port = keep.get((protocol, want["container_port"]))
        if host_port is None or (protocol, host_port) in used:
            host_port = next((p for p in candidates if (protocol, p) not in used), None)
            if host_port is None:
                raise NoCapacity(f"host {host.name} has no free port left in {settings.HOSTPANEL_PORT_RANGE}")
        used.add((protocol, host_port))
        out.append({"container_port": want["container_port"], "protocol": protocol, "host_port": host_port})
    return out


# ---- placing ----------------------------------------------------------------------------
@dataclass
class Room:
    host: Host
    cpu_millis: int
    memory_bytes: int
    app_replicas: int


def free_room(app: App | None = None) -> list[Room]:
    """Each up and active host's free CPU and memory (capacity minus what placed replicas request).

    The up hosts' rows stay locked until the caller's transaction ends (taken in id order, so two
    placements never deadlock): concurrent placements run one after another, each counting the
    replicas the one before it placed, so no host is given more than it has (PostgreSQL; SQLite's
    IMMEDIATE transactions serialize them anyway).
    """
    require_atomic("free_room()")
    up = Host.objects.filter(state=Host.State.UP, lifecycle=Host.Lifecycle.ACTIVE)
    list(up.select_for_update().order_by("pk").values_list("pk", flat=True))  # FOR UPDATE: no GROUP BY
    hosts = up.annotate(
        used_cpu=Sum("replicas__release__cpu_millis"),
        used_mem=Sum("replicas__release__memory_bytes"),
        mine=Count("replicas", filter=Q(replicas__app=app))
        if app is not None
        else Count("pk", filter=Q(pk=None)),
    )
    return [
        Room(
            host=h,
            cpu_millis=h.cpu_millis - (h.used_cpu or 0),
            memory_bytes=h.memory_bytes - (h.used_mem or 0),
            app_replicas=h.mine,
        )
        for h in hosts
    ]


def place_replicas(app: App, replicas: list[Replica], *, strict: bool) -> list[Replica]:
    """Put each replica on the up host with room that has fewest of the app's replicas.

    With ``strict`` a replica that fits nowhere raises NoCapacity (the caller's
    transaction rolls back); otherwise it stays pending with the reason.
    Returns the replicas placed.
    """

    rooms = free_room(app)
    placed = []
    for replica in replicas:
        release = replica.release
        need_cpu, need_mem = release.cpu_millis, release.memory_bytes
        fits = [r for r in rooms if r.cpu_millis >= need_cpu and r.memory_bytes >= need_mem]
        if not fits:
            message = _no_room_message(app, replica, rooms)
            if strict:
                raise NoCapacity(message, {"cpu_millis": need_cpu, "memory_bytes": need_mem})
            Replica.objects.filter(pk=replica.pk).exclude(
                state=Replica.State.PENDING, message=message
            ).update(state=Replica.State.PENDING, message=message)
            continue
        fits.sort(key=lambda r: (r.app_replicas, -r.memory_bytes / max(r.host.memory_bytes, 1), r.host.name))
        room = fits[0]
        room.cpu_millis -= need_cpu
        room.memory_bytes -= need_mem
        room.app_replicas += 1
        replica.ports = allocate_ports(replica, room.host)
        replica.host = room.host
        replica.state = Replica.State.STARTING
        replica.message = ""
        Replica.objects.filter(pk=replica.pk).update(
            host=room.host,
            state=replica.state,
            message="",
            ports=replica.ports,
            generation=F("generation") + 1,  # a new placement, a new generation: hosts/fencing.py
        )
        placed.append(replica)
    return placed


def _no_room_message(app: App, replica: Replica, rooms: list[Room]) -> str:
    release = replica.release
    want = f"{release.cpu_millis} millicores and {release.memory_bytes // 1024**2} MiB"
    if not rooms:
        return (
            f"no host is up and active to run replica {replica.index} of {app.name} (needs {want}); "
            "add a host, start its agent or uncordon one"
        )
    best = max(rooms, key=lambda r: (r.memory_bytes, r.cpu_millis))
    return (
        f"no host has room for replica {replica.index} of {app.name}: it needs {want}; the roomiest up host "
        f"{best.host.name} has {max(best.cpu_millis, 0)} millicores and "
        f"{max(best.memory_bytes, 0) // 1024**2} MiB free"
    )


def schedule_pending() -> int:
    """Place pending replicas (after a host came up or went down); returns how many were placed."""

    placed = 0
    app_ids = Replica.objects.filter(host=None).values_list("app_id", flat=True).distinct()
    for app in App.objects.filter(pk__in=list(app_ids)).select_related("tenant"):
        with transaction.atomic():
            pending = list(
                Replica.objects.select_for_update().filter(app=app, host=None).select_related("release")
            )
            done = place_replicas(app, pending, strict=False)
            reconcile_hosts(r.host_id for r in done)
            placed += len(done)
    return placed


# ---- what hosts and tenants tell (connected in DeploymentsConfig.ready) -------------------
def place_pending(sender: object, **kwargs: object) -> None:
    """hosts.signals.room_changed: see :func:`schedule_pending`."""
    schedule_pending()


def follow_quota(sender: object, tenant: Tenant, **kwargs: object) -> None:
    """tenants.signals.quota_changed: the tenant's hosts reconcile, so its containers follow."""
    reconcile_tenant_hosts(tenant)
