"""Tenant limits on a host: the panel's quota written to the engine's tenant cgroup.

The host agent's engine requires tenant limits (``Engine.require_tenant_limits``): a
tenant without a quota written on the host runs nothing there. The agent writes every
tenant's quota before it reconciles (tenants with no replica here too, so a build or
an exec never finds a tenant cgroup without limits), and a build writes its tenant's
quota once more right before it runs. Per-build RUN limits come from
``HOSTPANEL_BUILD_LIMITS`` and are capped by the tenant's quota in the engine.
"""

from __future__ import annotations

import logging

from django.conf import settings

from engine.cgroups.resources import CPU_PERIOD_US, HostCapacity, Resources
from engine.engine import Engine
from engine.errors import EngineError, NotFound
from engine.runtime.tenant_disks import MIN_DISK
from hostpanel.tenants.models import Quota, Tenant

log = logging.getLogger(__name__)


def quota_limits(quota: Quota) -> dict[str, int]:
    """What of ``quota`` a host applies, as plain data (the internal API sends it to enrolled hosts)."""
    return {
        "cpu_millis": quota.cpu_millis,
        "memory_bytes": quota.memory_bytes,
        "pids": quota.pids,
        "disk_bytes": quota.disk_bytes,
    }


def tenant_resources(limits: dict[str, int], capacity: HostCapacity) -> Resources:
    """The engine form of ``limits`` (:func:`quota_limits`), clamped to what this host has (the
    engine refuses more)."""
    cpu_millis = min(limits["cpu_millis"], capacity.cpus * 1000)
    return Resources(
        memory=min(limits["memory_bytes"], capacity.memory),
        cpu_quota=cpu_millis * CPU_PERIOD_US // 1000,
        pids=limits["pids"],
    )


def write_tenant_limits(engine: Engine, tenant: Tenant, capacity: HostCapacity | None = None) -> Resources:
    """Write ``tenant``'s quota to ``engine`` (a no-op when it is there already); returns it.

    A tenant without a quota row gets nothing written, so the engine runs nothing of it.
    Raises EngineError when the engine refuses the quota.
    """
    quota = Quota.objects.filter(tenant=tenant).first()
    if quota is None:
        return Resources()
    return apply_tenant_limits(engine, tenant.slug, quota_limits(quota), capacity)


def apply_tenant_limits(
    engine: Engine, slug: str, limits: dict[str, int], capacity: HostCapacity | None = None
) -> Resources:
    """Write the tenant's ``limits`` (:func:`quota_limits`) to ``engine`` where they differ;
    returns them. Runs on the host (no database)."""
    wanted = tenant_resources(limits, capacity or HostCapacity.detect())
    if engine.tenant_quota(slug) != wanted:
        engine.set_tenant_quota(slug, wanted)
        log.info("tenant %s: quota written to this host", slug)
    _write_tenant_disk(engine, slug, limits["disk_bytes"])
    return wanted


def _write_tenant_disk(engine: Engine, slug: str, size: int) -> None:
    """Size the tenant's root file system disk by its storage quota (it bounds rootfs writes).

    A disk never shrinks; a lower quota leaves the disk as it is (logged), and the panel's
    storage accounting refuses new uploads while the tenant is over its quota.
    """
    try:
        current = engine.tenant_storage(slug).size
    except NotFound:
        current = None
    if current is not None and current >= size:
        if current > size:
            log.info(
                "tenant %s: disk of %s bytes stays above its quota of %s (disks never shrink)",
                slug,
                current,
                size,
            )
        return
    try:
        engine.set_tenant_storage(slug, max(size, MIN_DISK))
    except EngineError as exc:
        log.warning("tenant %s: cannot size its root file system disk on this host: %s", slug, exc)


def build_run_limits() -> Resources:
    """The limits of each RUN step of a build (``HOSTPANEL_BUILD_LIMITS``); the engine lowers them
    to the tenant's quota where that is lower."""
    limits = settings.HOSTPANEL_BUILD_LIMITS
    return Resources(
        memory=int(limits["memory_bytes"]),
        cpu_quota=int(limits["cpu_millis"]) * CPU_PERIOD_US // 1000,
        pids=int(limits["pids"]),
    )
