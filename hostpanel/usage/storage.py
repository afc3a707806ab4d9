"""What a tenant stores on its hosts (root file system writes, build cache), as the host agents
report it: usage's share of the one storage quota (hostpanel.tenants.storage)."""

from __future__ import annotations

from typing import Any

from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from hostpanel.tenants.storage import sum_of
from hostpanel.usage.models import TenantStorage


def stored_bytes(sender: object, tenant: Tenant, **kwargs: Any) -> dict[str, int]:
    """Answers ``tenants.signals.stored_bytes``: the hosts' shares as last reported."""
    hosts = TenantStorage.objects.filter(tenant=tenant)
    return {"rootfs": sum_of(hosts, "rootfs_bytes"), "build_cache": sum_of(hosts, "build_cache_bytes")}


def record_tenant_storage(host: Host, tenant: Tenant, rootfs_bytes: int, build_cache_bytes: int) -> None:
    """Store what the host agent measured of ``tenant`` on ``host``."""
    TenantStorage.objects.update_or_create(
        tenant=tenant,
        host=host,
        defaults={"rootfs_bytes": rootfs_bytes, "build_cache_bytes": build_cache_bytes},
    )
