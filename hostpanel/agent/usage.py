"""Usage collection on the host: sample the engine once, as plain data (no database).

:func:`sample` reads what the engine counted (its tenants' cumulative counters and storage, and
each app container's counters, found by the app label); :func:`report_usage` sends it to
``POST /internal/v1/host/usage`` (hostpanel/usage/internal.py), where the panel writes it with
:func:`hostpanel.usage.services.record_sample`, for the tenants and apps that host may speak for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from engine.engine import Engine
from engine.errors import ContainerNotFound, EngineError, NotFound
from hostpanel.agent.credentials import InternalClient, PanelError
from hostpanel.deployments.desired import LABEL_APP
from hostpanel.usage.services import ContainerReading, EngineUsage, HostSample, TenantReading

log = logging.getLogger(__name__)


def sample(engine: Engine, usage_of: Iterable[str], storage_of: Iterable[str] = ()) -> HostSample:
    """Sample the engine's usage counters (``engine.sample_usage()``), then read the usage and
    storage of the tenants ``usage_of``, the storage only of the tenants ``storage_of`` (the
    others), and the counters of every container with an app label, stopped ones too (a restart
    keeps its counters). Slugs, not rows: no database here."""
    engine.sample_usage()
    wanted = list(dict.fromkeys(usage_of))
    storage_only = [slug for slug in dict.fromkeys(storage_of) if slug not in wanted]
    tenants = [_tenant(engine, slug, True) for slug in wanted]
    tenants += [_tenant(engine, slug, False) for slug in storage_only]
    containers = []
    for container in engine.list(all=True):
        if LABEL_APP not in container.labels:
            continue
        try:
            usage = engine.container_usage(container.id)
        except ContainerNotFound:
            continue  # removed meanwhile
        app = container.labels[LABEL_APP]
        containers.append(ContainerReading(container.id, container.tenant, app, usage))
    return HostSample(tenants, containers)


def _tenant(engine: Engine, slug: str, with_usage: bool) -> TenantReading:
    try:
        rootfs = engine.tenant_storage(slug).used
    except NotFound:
        rootfs = 0
    usage = engine.tenant_usage(slug).usage if with_usage else None
    return TenantReading(slug, usage, rootfs, engine.build_cache.tenant_bytes(slug))


def _counters(usage: EngineUsage) -> dict[str, Any]:
    return {
        "cpu_seconds": float(usage.cpu_seconds),
        "memory_byte_seconds": float(usage.memory_byte_seconds),
        "disk_bytes": int(usage.disk_bytes),
    }


def sample_body(found: HostSample) -> dict[str, Any]:
    """``found`` as ``POST /internal/v1/host/usage`` takes it (JSON; a tenant whose storage only was
    read has no counters)."""
    return {
        "tenants": [
            {
                "tenant": t.tenant,
                **(_counters(t.usage) if t.usage is not None else {}),
                "rootfs_bytes": int(t.rootfs_bytes),
                "build_cache_bytes": int(t.build_cache_bytes),
            }
            for t in found.tenants
        ],
        "containers": [
            {"container": c.container_id, "tenant": c.tenant, "app": int(c.app_id), **_counters(c.usage)}
            for c in found.containers
            if c.app_id.isascii() and c.app_id.isdigit()
        ],
    }


def report_usage(engine: Engine, client: InternalClient) -> dict[str, Any] | None:
    """Sample the tenants the panel names in this host's
    desired document (``usage_tenants``: usage and storage; ``storage_tenants``: the storage of
    the others, e.g. tenants that only build here) and send the sample; the panel's answer (what
    it wrote, what it ignored), or None when the panel or the engine failed (logged; the next
    round counts what this one missed, the counters being cumulative)."""
    try:
        document = client.desired()
        found = sample(engine, document.get("usage_tenants", []), document.get("storage_tenants", []))
        answer = client.usage(sample_body(found))
    except (PanelError, EngineError) as exc:
        log.warning("usage collection failed: %s", exc)
        return None
    if answer.get("ignored", {}).get("tenants") or answer.get("ignored", {}).get("containers"):
        log.warning("usage: the panel ignored %s", answer["ignored"])
    return answer
