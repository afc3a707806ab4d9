"""The task host agents run to apply a routing table. Thin: hands it to the edge agent."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from hostpanel.agent import edge as agent
from hostpanel.edge.routes import BadRoutes

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def apply_routes(table: dict[str, Any]) -> None:
    """Serve ``table`` from this host's DNS server (ignored if this host has a newer one)."""
    edge = agent.current()
    if edge is None:
        log.warning("apply_routes: this worker runs no edge agent; table ignored")
        return
    try:
        if edge.apply(table):
            log.info("routes generation %s applied", table.get("generation"))
    except BadRoutes as exc:
        log.error("apply_routes: refused a bad table: %s", exc)
