"""The agent's side of deleting a tenant: purge it from this host's engine, then clear the request.

The panel makes one :class:`TenantPurge` row per host (hosts.services.request_tenant_purge);
the row goes once this host's engine holds nothing of the tenant. A failed purge keeps the
row with its error, and the panel sends it again later (purging is idempotent).
"""

from __future__ import annotations

import logging

from django.db.models import F

from engine.engine import Engine
from engine.errors import EngineError
from engine.purge import PurgeReport
from hostpanel.hosts.models import Host, TenantPurge

log = logging.getLogger(__name__)


def purge_tenant(engine: Engine, host: Host, slug: str) -> PurgeReport | None:
    """Purge ``slug`` from ``engine`` if this host still has to; None when there was nothing to do
    or the purge failed (the error is kept on the row for the admins)."""
    request = TenantPurge.objects.filter(host=host, tenant_slug=slug).first()
    if request is None:
        return None  # done already (a resent task)
    try:
        report = engine.purge_tenant(slug)
    except EngineError as exc:
        log.warning("host %s: purging tenant %s failed: %s", host.name, slug, exc)
        TenantPurge.objects.filter(pk=request.pk).update(
            attempts=F("attempts") + 1, last_error=str(exc)[:2000]
        )
        return None
    TenantPurge.objects.filter(pk=request.pk).delete()
    log.info("host %s: purged tenant %s: %s", host.name, slug, report.to_dict())
    return report
