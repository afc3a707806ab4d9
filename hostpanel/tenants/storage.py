"""One storage quota per tenant: everything it stores counts against ``Quota.disk_bytes``.

Counted: its volumes (their size caps), its images (uploaded and built archives), its
registry blobs and uploads in progress, and on each host its containers' root file system
writes and its build cache (reported by the host agents). An upload that would take the
tenant over its quota is refused (422 in the API, DENIED in the registry).

The quota lives here, at the bottom of the panel (tenants), so the resources above check it
without importing each other: each app that stores something answers ``signals.stored_bytes``
for its own kinds (volumes, images, registry: their services; rootfs and build_cache: usage),
connected in its ``AppConfig.ready``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from django.conf import settings
from django.db.models import QuerySet, Sum

from hostpanel.errors import QuotaExceeded
from hostpanel.tenants import units
from hostpanel.tenants.models import Quota, Tenant
from hostpanel.tenants.signals import stored_bytes


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


KINDS = tuple(f.name for f in fields(StorageUse))


def sum_of(queryset: QuerySet[object], field: str) -> int:
    """The sum of ``field`` over ``queryset`` (0 when empty): what a receiver of ``stored_bytes`` counts."""
    return int(queryset.aggregate(total=Sum(field))["total"] or 0)


def storage_use(tenant: Tenant) -> StorageUse:
    """What ``tenant`` stores now (hosts' shares as last reported), asked of the apps that store it.

    Each kind must be answered exactly once: a kind nobody answers (an app not connected) or
    answered twice is a programming error, never a silent 0 that would let uploads past the quota.
    """
    counted: dict[str, int] = {}
    for receiver, answer in stored_bytes.send(sender=Tenant, tenant=tenant):
        for kind, size in answer.items():
            if kind not in KINDS or kind in counted:
                raise RuntimeError(f"stored_bytes: {receiver!r} answered {kind!r}, unknown or answered twice")
            counted[kind] = int(size)
    missing = [kind for kind in KINDS if kind not in counted]
    if missing:
        raise RuntimeError(f"stored_bytes: no app answered {', '.join(missing)}")
    return StorageUse(**counted)


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
