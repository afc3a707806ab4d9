"""The agent's side of deleting a tenant: purge it from this host's engine, then clear the request.

The panel makes one :class:`TenantPurge` row per host (hosts.services.request_tenant_purge);
the row goes once this host's engine holds nothing of the tenant. A failed purge keeps the
row with its error, and the host is asked again later (purging is idempotent).

The agent purges the slugs its desired document names (``purge_tenants``) with :func:`purge` and
sends the outcomes with ``POST /internal/v1/host/purged`` (:func:`purge_listed`, from
:func:`hostpanel.agent.remote.reconcile`), which the panel's one writer records
(:func:`hosts.services.record_purge`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from engine.engine import Engine
from engine.errors import EngineError
from engine.purge import PurgeReport
from hostpanel.hosts import services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One purge of a tenant on this host: its report when done, else its error."""

    report: PurgeReport | None
    error: str | None


def purge(engine: Engine, host_name: str, slug: str) -> Outcome:
    """Purge ``slug`` from ``engine`` (idempotent); an engine or OS error is the outcome's (never
    blank: the panel keeps it on the row), not raised."""
    try:
        report = engine.purge_tenant(slug)
    except (EngineError, OSError) as exc:
        log.warning("host %s: purging tenant %s failed: %s", host_name, slug, exc)
        return Outcome(None, (str(exc).strip() or type(exc).__name__)[: services.PURGE_ERROR_MAX])
    log.info("host %s: purged tenant %s: %s", host_name, slug, report.to_dict())
    return Outcome(report, None)


class PurgedClient(Protocol):
    def purged(self, purged: list[str], failed: dict[str, str]) -> dict[str, Any]: ...


def purge_listed(engine: Engine, client: PurgedClient, host_name: str, slugs: list[str]) -> dict[str, Any]:
    """Purge each of ``slugs`` (the desired document's ``purge_tenants``) from ``engine`` and tell the
    panel the outcomes; its answer ({} when there was nothing to purge)."""
    if not slugs:
        return {}
    purged: list[str] = []
    failed: dict[str, str] = {}
    for slug in slugs:
        outcome = purge(engine, host_name, slug)
        if outcome.error is None:
            purged.append(slug)
        else:
            failed[slug] = outcome.error
    answer = client.purged(purged, failed)
    if answer.get("ignored"):
        log.warning("host %s: the panel ignored the purges of %s", host_name, answer["ignored"])
    return answer
