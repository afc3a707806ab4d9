"""Business rules of hosts: registration, heartbeats, down hosts, the lifecycle, tenant purges.

A host whose heartbeat is older than ``HOSTPANEL_HOST_GRACE_SECONDS`` is marked down. The
scheduler, which places replicas on hosts, lives above (deployments/placement.py): this module
tells it what happens to hosts through signals.py (room changed, host down, moving off, which
replicas a heartbeat fences) and never imports it (import-linter's layers, pyproject.toml).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from hostpanel.audit.services import Actor, audited
from hostpanel.errors import Conflict, NotFound
from hostpanel.hosts import dispatch, fencing, lifecycle, signals
from hostpanel.hosts.models import Host, TenantPurge
from hostpanel.tenants.access import require_admin

log = logging.getLogger(__name__)


# ---- telling agents -----------------------------------------------------------------
def reconcile_hosts(host_ids: Iterable[int | None]) -> None:
    """After the current transaction commits, ask each host's agent to reconcile."""
    ids = sorted({i for i in host_ids if i is not None})
    if not ids:
        return

    def send() -> None:
        for host in Host.objects.filter(pk__in=ids).exclude(state=Host.State.DOWN):
            try:
                dispatch.send_reconcile(host.pk, host.queue)
            except Exception:  # the broker is down: the agent's periodic reconcile catches up
                log.exception("could not enqueue reconcile for host %s", host.name)

    transaction.on_commit(send)


def reconcile_every_host() -> None:
    """After the current transaction commits, every host that is up reconciles (what a deleted
    resource left may be on any of them, not only where the tenant's replicas run now)."""
    reconcile_hosts(Host.objects.values_list("pk", flat=True))


# ---- purging deleted tenants ----------------------------------------------------------
# A purge sent to an agent that has not answered after this long is sent again.
PURGE_RESEND_SECONDS = 300.0


def request_tenant_purge(slug: str) -> None:
    """Make every host purge what it holds of the (just deleted) tenant ``slug``.

    One :class:`TenantPurge` row per host; the hosts that are up get the task when the
    current transaction commits, the others at their next registration or heartbeat.
    """
    hosts = list(Host.objects.all())
    TenantPurge.objects.bulk_create(
        [TenantPurge(host=host, tenant_slug=slug) for host in hosts], ignore_conflicts=True
    )
    live = [h.pk for h in hosts if h.state != Host.State.DOWN]
    transaction.on_commit(lambda: send_tenant_purges(live))


def send_tenant_purges(host_ids: Iterable[int]) -> int:
    """Send the hosts' pending purges never sent or not answered for a while; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=PURGE_RESEND_SECONDS)
    due = TenantPurge.objects.filter(host_id__in=list(host_ids)).filter(
        Q(sent_at=None) | Q(sent_at__lt=cutoff)
    )
    sent = 0
    for purge in due.select_related("host"):
        try:
            dispatch.send_purge_tenant(purge.host_id, purge.host.queue, purge.tenant_slug)
        except Exception:  # the broker is down: the next heartbeat sends it again
            log.exception("could not enqueue the purge of %s on host %s", purge.tenant_slug, purge.host.name)
            continue
        TenantPurge.objects.filter(pk=purge.pk).update(sent_at=timezone.now())
        sent += 1
    return sent


# The agent finds its purges in its desired document (``purge_tenants``), at
# most this many at a time (the oldest first); ``POST host/purged`` takes as many outcomes.
PURGES_PER_DOCUMENT = 100
PURGE_ERROR_MAX = 2000  # what a row keeps of a purge's error


def pending_purges(host: Host) -> list[str]:
    """The slugs ``host`` should purge now (its desired document's ``purge_tenants``): its rows never
    tried, and those whose last failed attempt is older than :data:`PURGE_RESEND_SECONDS` (the
    resend delay); oldest first, at most :data:`PURGES_PER_DOCUMENT`. Only
    ``host``'s own rows: another host's purges are never named to it."""
    cutoff = timezone.now() - timedelta(seconds=PURGE_RESEND_SECONDS)
    due = TenantPurge.objects.filter(host=host).filter(Q(attempted_at=None) | Q(attempted_at__lt=cutoff))
    return list(
        due.order_by("requested_at", "pk").values_list("tenant_slug", flat=True)[:PURGES_PER_DOCUMENT]
    )


def record_purge(host: Host, slug: str, error: str | None = None) -> bool:
    """The outcome of ``host``'s purge of ``slug`` (its agent's ``POST host/purged``): done
    (``error`` None) deletes its row; failed adds an attempt and keeps the error and its time, and the
    row stays to be tried again. False, and nothing written, when ``host`` has no row of ``slug``
    (purged already, or not its own)."""
    mine = TenantPurge.objects.filter(host=host, tenant_slug=slug)
    if error is None:
        return mine.delete()[0] > 0
    failed = mine.update(
        attempts=F("attempts") + 1, last_error=error[:PURGE_ERROR_MAX], attempted_at=timezone.now()
    )
    return failed > 0


def record_purges(host: Host, purged: Iterable[str], failed: dict[str, str]) -> dict[str, list[str]]:
    """What an agent reports of its purges (``POST host/purged``), written with
    :func:`record_purge` to ``host``'s own rows only: the slugs ``purged`` (rows deleted) and
    ``failed`` (error kept), and ``ignored``: those ``host`` has no row of, left alone."""
    answer: dict[str, list[str]] = {"purged": [], "failed": [], "ignored": []}
    with transaction.atomic():
        for slug in purged:
            answer["purged" if record_purge(host, slug) else "ignored"].append(slug)
        for slug, error in failed.items():
            answer["failed" if record_purge(host, slug, error) else "ignored"].append(slug)
    if answer["purged"] or answer["failed"]:
        log.info("host %s: purged %s, failed %s", host.name, answer["purged"], answer["failed"])
    if answer["ignored"]:
        log.warning("host %s reported purges it has none of: %s (ignored)", host.name, answer["ignored"])
    return answer


def check_slug_free(slug: str) -> None:
    """Conflict while hosts still hold things of a deleted tenant ``slug`` (a new one would inherit them)."""
    hosts = sorted(TenantPurge.objects.filter(tenant_slug=slug).values_list("host__name", flat=True))
    if hosts:
        raise Conflict(
            f"a deleted tenant {slug!r} is still being purged on host(s) {', '.join(hosts)}; "
            "the slug is free once their agents have purged it (a host that is down does it when it "
            "comes back; deleting a host that will not come back also frees the slug)"
        )


# ---- registration and heartbeats ------------------------------------------------------
def register_host(
    name: str,
    *,
    address: str = "",
    cpu_millis: int,
    memory_bytes: int,
    disk_bytes: int = 0,
    engine_root: str = "",
    engine_instance: str = "",
) -> Host:
    """Create the host on an agent's first start, or refresh its capacity; marks it up.

    An agent starts with no build running, so a build of this host still marked running was cut
    off by the previous agent's end: it is failed, with that reason."""
    with transaction.atomic():
        host, created = Host.objects.select_for_update().get_or_create(
            name=name,
            defaults={"cpu_millis": cpu_millis, "memory_bytes": memory_bytes},
        )
        fresh = host.last_heartbeat is not None and timezone.now() - host.last_heartbeat < timedelta(
            seconds=settings.HOSTPANEL_HOST_GRACE_SECONDS
        )
        other_engine = (host.engine_root, host.engine_instance) not in (
            ("", ""),
            (engine_root, engine_instance),
        )
        if not created and fresh and other_engine and host.state != Host.State.DOWN:
            raise Conflict(
                f"host {name!r} is served by a live agent on engine {host.engine_root} "
                f"({host.engine_instance}); give this agent another --name, or stop that agent and wait "
                f"{settings.HOSTPANEL_HOST_GRACE_SECONDS:.0f}s"
            )
        host.address = address or host.address
        host.cpu_millis, host.memory_bytes, host.disk_bytes = cpu_millis, memory_bytes, disk_bytes
        host.engine_root, host.engine_instance = engine_root, engine_instance
        host.last_heartbeat = timezone.now()
        if host.state == Host.State.DOWN:
            host.state = Host.State.UP
        host.save()
    if created:
        log.info("registered host %s", name)
    signals.agent_restarted.send(sender=Host, host=host)  # builds it ran fail
    TenantPurge.objects.filter(host=host).update(sent_at=None)  # the old agent's queue may be lost
    send_tenant_purges([host.pk])
    room_changed()
    return host


def heartbeat(host_id: int, running: dict[str, int] | None = None) -> list[str]:
    """Record that the host's agent is alive; a host that was down comes back up, and the work
    waiting for it is sent again (:data:`signals.host_beat`: its builds not sent yet).

    ``running`` is what the agent runs ({replica id: generation of its container}); the answer
    is the replica ids whose containers it must remove at once (fencing.py: moved away from it
    while it was cut off, or placed anew)."""
    now = timezone.now()
    Host.objects.filter(pk=host_id).update(last_heartbeat=now)
    send_tenant_purges([host_id])
    if Host.objects.filter(pk=host_id, state=Host.State.DOWN).update(state=Host.State.UP):
        log.info("host %s is up again", host_id)
        room_changed()
        reconcile_hosts([host_id])  # its pinned replicas run again
    for receiver, outcome in signals.host_beat.send_robust(sender=Host, host_id=host_id):
        if isinstance(outcome, Exception):
            log.error("host %s: %s failed on its heartbeat", host_id, receiver, exc_info=outcome)
    if not running:
        return []
    placed: dict[str, int] = {}
    for _, answer in signals.placements_asked.send(sender=Host, host_id=host_id):
        placed.update(answer)
    stale = fencing.fenced(placed, running)
    if stale:
        log.warning("host %s runs replicas placed elsewhere or anew since: fenced %s", host_id, stale)
    return stale


def mark_stale_hosts(now: datetime | None = None) -> list[Host]:
    """Mark hosts without a recent heartbeat (``HOSTPANEL_HOST_GRACE_SECONDS``) down and move their
    stateless replicas; those with volumes stay, shown as host down. Returns the hosts."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HOSTPANEL_HOST_GRACE_SECONDS)
    stale = list(
        Host.objects.exclude(state=Host.State.DOWN).filter(
            Q(last_heartbeat__lt=cutoff) | Q(last_heartbeat=None)
        )
    )
    moved = []
    for host in stale:
        with transaction.atomic():
            still_stale = (
                Host.objects.filter(pk=host.pk)
                .exclude(state=Host.State.DOWN)
                .filter(Q(last_heartbeat__lt=cutoff) | Q(last_heartbeat=None))
            )
            if not still_stale.update(state=Host.State.DOWN):
                continue  # a heartbeat arrived meanwhile
            log.warning("host %s: no heartbeat since %s, marked down", host.name, host.last_heartbeat)
            # its stateless replicas move, those with volumes wait for it; its builds fail
            signals.host_down.send(sender=Host, host=host)
            moved.append(host)
    if moved:
        room_changed()
    return moved


def watch_hosts() -> list[Host]:
    """The periodic host checks (``manage.py watchhosts`` on the panel):
    mark dead hosts down (their stateless replicas move), let drains and evacuations go on and end,
    place pending replicas, then tell the apps above (``signals.checked``: stacks' waiting services
    start once their dependencies are met). Returns the hosts found dead."""
    dead = mark_stale_hosts()
    settle_lifecycles()
    room_changed()
    for receiver, error in signals.checked.send_robust(sender=Host):
        if isinstance(error, Exception):
            log.error("after the host checks, %s failed: %r", receiver, error)
    return dead


def room_changed() -> None:
    """Tell the scheduler above that hosts' room changed: it places the pending replicas."""
    signals.room_changed.send(sender=Host)


# ---- admin actions -------------------------------------------------------------------
def hosts_with_use(actor: Actor) -> QuerySet[Host]:
    """Every host (admins), annotated with its replica count and the CPU and memory they request."""
    require_admin(actor)
    return Host.objects.annotate(
        replica_count=Count("replicas"),
        used_cpu_millis=Coalesce(Sum("replicas__release__cpu_millis"), 0),
        used_memory_bytes=Coalesce(Sum("replicas__release__memory_bytes"), 0),
    ).order_by("name")


def create_host(actor: Actor, **values: Any) -> Host:
    """Pre-register a host (its agent fills in the capacity it measures on start)."""
    require_admin(actor)
    with audited(actor, "host.create", None) as entry:
        if Host.objects.filter(name=values["name"]).exists():
            raise Conflict(f"host {values['name']!r} exists already")
        host = Host.objects.create(**values)
        entry.obj = host
    return host


def update_host(actor: Actor, host: Host, **values: Any) -> Host:
    require_admin(actor)
    with audited(actor, "host.update", None, host), transaction.atomic():
        for key, value in values.items():
            setattr(host, key, value)
        host.save()
    return host


def drain_host(actor: Actor, host: Host) -> Host:
    """Move the host's movable replicas off it (rolled); it takes no new ones until uncordoned."""
    return change_lifecycle(actor, host, "drain")


def change_lifecycle(actor: Actor, host: Host, action: str) -> Host:
    """Cordon, uncordon, drain or evacuate ``host`` (admins; audited as ``host.<action>``).

    See lifecycle.py for what each does; Conflict when the action does not apply to the
    host's lifecycle now. Drain and evacuate move replicas: signals.host_moving_off, which
    deployments/host_moves.py answers (rolled as deploys are)."""
    require_admin(actor)
    if action not in lifecycle.ACTIONS:
        raise NotFound(f"no host action {action!r}: use one of {', '.join(lifecycle.ACTIONS)}")
    with audited(actor, f"host.{action}", None, host), transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        host.lifecycle = lifecycle.next_lifecycle(host.lifecycle, action)
        host.lifecycle_changed_at = timezone.now()
        host.save(update_fields=["lifecycle", "lifecycle_changed_at"])
        if lifecycle.moving_off(host.lifecycle):
            signals.host_moving_off.send(sender=Host, host=host)
        reconcile_hosts([host.pk])  # an evacuated host stops its pinned replicas, a restored one starts them
        if action == "uncordon":
            room_changed()
    settle_lifecycles([host.pk])
    host.refresh_from_db()
    return host


def settle_lifecycles(host_ids: Iterable[int] | None = None) -> list[Host]:
    """Hosts draining or evacuating with nothing movable left become drained or evacuated;
    the others' moves go on (a replica placed back on the host meanwhile, a roll that failed):
    signals.host_moving_off, whose receivers answer how many movable replicas are still on the
    host. Returns the hosts settled (the heartbeat runs it)."""
    hosts = Host.objects.filter(lifecycle__in=[Host.Lifecycle.DRAINING, Host.Lifecycle.EVACUATING])
    if host_ids is not None:
        hosts = hosts.filter(pk__in=list(host_ids))
    done = []
    for host in hosts:
        with transaction.atomic():
            left = sum(n for _, n in signals.host_moving_off.send(sender=Host, host=host))
        settled = lifecycle.settled(host.lifecycle, left)
        if settled != host.lifecycle:
            Host.objects.filter(pk=host.pk, lifecycle=host.lifecycle).update(lifecycle=settled)
            log.info("host %s: %s", host.name, settled)
            done.append(host)
    return done


def delete_host(actor: Actor, host: Host) -> None:
    require_admin(actor)
    with audited(actor, "host.delete", None, host), transaction.atomic():
        if host.replicas.exists():
            raise Conflict(f"host {host.name!r} still has replicas; drain it first")
        host.delete()


# ---- a tenant's life (tenants.signals, connected in HostsConfig.ready) -------------------
def refuse_purging_slug(sender: object, slug: str, **kwargs: object) -> None:
    """tenants.signals.tenant_creating: see :func:`check_slug_free`."""
    check_slug_free(slug)


def purge_deleted_tenant(sender: object, slug: str, **kwargs: object) -> None:
    """tenants.signals.tenant_deleted: see :func:`request_tenant_purge`."""
    request_tenant_purge(slug)
