"""Moving replicas off a draining or evacuating host, rolled as deploys are.

An app that serves HTTP and runs gets a roll (deployments/rollout.py, kind ``drain``) to its
current release: the roll keeps its replicas on other hosts and replaces those on this host,
one at a time, a new one ready on another host before an old one is taken out of the rotation
and stopped. Other apps (no readiness gate to wait for, or stopped) are placed elsewhere at
once. Replicas with volumes are pinned and stay (their data lives on this host's disk).
Idempotent: the heartbeat calls it again while the host drains.
"""

from __future__ import annotations

import logging

from django.db import transaction

from hostpanel.deployments import rollout
from hostpanel.deployments.models import App, Replica, Rollout
from hostpanel.deployments.placement import evict, movable_left, pinned_replica_ids, schedule_pending
from hostpanel.errors import NoCapacity
from hostpanel.hosts.models import Host

log = logging.getLogger(__name__)


def move_off(host: Host) -> int:
    """Start moving the host's movable replicas (inside the caller's transaction); returns how many
    apps began a roll or were placed anew."""
    pinned = pinned_replica_ids(host)
    movable = Replica.objects.filter(host=host, drain_until__isnull=True).exclude(pk__in=pinned)
    app_ids = sorted(set(movable.values_list("app_id", flat=True)))
    moved = 0
    evicted = False
    for app in App.objects.select_for_update().filter(pk__in=app_ids):
        if rollout.active_rollout(app) is not None:
            continue  # a roll goes on (this drain's, or a deploy's): the next pass looks again
        current = app.current_release
        if current is not None and rollout.should_roll(app, current):
            try:
                with transaction.atomic():
                    rollout.begin(app, current, Rollout.Kind.DRAIN)
            except NoCapacity as exc:
                log.warning("host %s: cannot move app %s yet: %s", host.name, app, exc)
                continue
        else:
            mine = movable.filter(app=app).values_list("pk", flat=True)
            evict(host, f"host {host.name} is draining", list(mine))
            evicted = True
        moved += 1
    if evicted:
        schedule_pending()
    return moved


def move_off_signalled(sender: object, host: Host, **kwargs: object) -> int:
    """hosts.signals.host_moving_off: see :func:`move_off`; answers how many movable replicas
    are still on the host (a roll moves them one at a time)."""
    move_off(host)
    return movable_left(host)
