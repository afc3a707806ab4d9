"""Which replicas of an app take requests through the edge proxy (its "rotation").

The routing table (hostpanel/edge) sends an app's hostnames to these replicas'
published ``http_port`` on their hosts. Rolling deploys (rollout.py) decide
membership: a replica serves once it passed its readiness gate (its health
check, or a TCP connect to ``http_port`` from the container's side) and until
a roll takes it out to drain.

Whoever keeps the edge's table (hostpanel/edge) listens to :data:`rotation_changed`,
sent after the transaction that changed an app's rotation commits.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import Signal

from hostpanel.deployments.models import App, Replica

# sent with ``app_id`` (int) once a change of that app's rotation is committed
rotation_changed = Signal()


def serving_replicas(app: App) -> QuerySet[Replica]:
    """The replicas of ``app`` that take new requests: placed, running, ready, healthy, not draining,
    not asked to stop, of an app that is not stopped."""
    return (
        Replica.objects.filter(
            app=app,
            app__state=App.State.RUNNING,
            state=Replica.State.RUNNING,
            host__isnull=False,
            ready=True,
            drain_until__isnull=True,
            stop_requested=False,
        )
        .exclude(health="unhealthy")
        .select_related("host", "release")
        .order_by("index")
    )


def serving_ids(app: App) -> list[int]:
    """The ids of :func:`serving_replicas`, in a stable order (what a roll compares)."""
    return list(serving_replicas(app).values_list("pk", flat=True))


def announce(app_id: int) -> None:
    """Send :data:`rotation_changed` for ``app_id`` once the current transaction commits."""
    transaction.on_commit(lambda: rotation_changed.send(sender=App, app_id=app_id))
