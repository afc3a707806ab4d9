"""One storage quota per tenant: everything it stores counts against ``Quota.disk_bytes``.

Counted: its volumes (their size caps), its images (uploaded and built archives), its
registry blobs and uploads in progress, and on each host its containers' root file system
writes and its build cache (``TenantStorage``, reported by the host agents). An upload that
would take the tenant over its quota is refused (422 in the API, DENIED in the registry).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings
from django.db.models import Sum

from hostpanel.errors import QuotaExceeded
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.registry.models import BlobLink, Upload
from hostpanel.tenants import units
from hostpanel.tenants.models import Quota, Tenant
from hostpanel.usage.models import TenantStorage
from hostpanel.volumes.models import Volume


@dataclass(frozen=True)
class StorageUse:
    """Bytes a tenant stores, by kind."""

    volumes: int = 0
    images: int = 0
    registry: int = 0
    rootfs: int = 0
    build_cache: int = 0

    @property
    def total(self) -> int:
        """Everything, the number the storage quota limits."""
        return self.volumes + self.images + self.registry + self.rootfs + self.build_cache

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready dict with the total."""
        return {**asdict(self), "total": self.total}


def _sum(queryset: object, field: str) -> int:
    return int(queryset.aggregate(total=Sum(field))["total"] or 0)  # type: ignore[attr-defined]


def storage_use(tenant: Tenant) -> StorageUse:
    """What ``tenant`` stores now (hosts' shares as last reported)."""
    hosts = TenantStorage.objects.filter(tenant=tenant)
    return StorageUse(
        volumes=_sum(Volume.objects.filter(tenant=tenant), "size_bytes"),
        images=_sum(Image.objects.filter(tenant=tenant), "size"),
        registry=_sum(BlobLink.objects.filter(repository__tenant=tenant), "size")
        + _sum(Upload.objects.filter(tenant=tenant), "size"),
        rootfs=_sum(hosts, "rootfs_bytes"),
        build_cache=_sum(hosts, "build_cache_bytes"),
    )


def check_storage(tenant: Tenant, adding: int, what: str) -> None:
    """QuotaExceeded (422) when storing ``adding`` more bytes takes ``tenant`` over its storage quota."""
    if adding <= 0:
        return
    quota = Quota.objects.filter(tenant=tenant).first()
    limit = quota.disk_bytes if quota is not None else int(settings.HOSTPANEL_DEFAULT_QUOTA["disk_bytes"])
    use = storage_use(tenant)
    if use.total + adding > limit:
        over = use.total + adding - limit
        raise QuotaExceeded(
            f"{what} of {units.size(adding)} would take tenant {tenant.slug!r} over its storage quota: "
            f"{units.over_text('disk_bytes', adding, max(limit - use.total, 0))}; it stores "
            f"{units.size(use.total)} of {units.size(limit)} (volumes, images, registry, container files, "
            "build cache); delete images, volumes or containers, or ask an admin to raise the storage quota",
            {
                "over": [
                    {
                        "resource": "disk_bytes",
                        "limit": limit,
                        "requested": use.total + adding,
                        "over_by": over,
                        "unit": "bytes",
                    }
                ],
                "storage": use.to_dict(),
            },
        )


def record_tenant_storage(host: Host, tenant: Tenant, rootfs_bytes: int, build_cache_bytes: int) -> None:
    """Store what the host agent measured of ``tenant`` on ``host``."""
    TenantStorage.objects.update_or_create(
        tenant=tenant,
        host=host,
        defaults={"rootfs_bytes": rootfs_bytes, "build_cache_bytes": build_cache_bytes},
    )
