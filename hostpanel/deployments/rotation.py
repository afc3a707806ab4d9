"""Which replicas of an app take requests through the edge proxy (its "rotation").

The routing table (hostpanel/edge) sends an app's hostnames to these replicas'
published ``http_port`` on their hosts. Rolling deploys decide membership.
"""

from __future__ import annotations

from django.db.models import QuerySet

from hostpanel.deployments.models import App, Replica


def serving_replicas(app: App) -> QuerySet[Replica]:
    """The replicas of ``app`` that take new requests: placed, running, not failing their health check."""
    return (
        Replica.objects.filter(app=app, state=Replica.State.RUNNING, host__isnull=False)
        .exclude(health__in=("starting", "unhealthy"))
        .select_related("host", "release")
    )
