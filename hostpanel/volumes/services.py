"""Business rules of volumes: create within the quota (count and bytes), delete when unused.

A volume lives on the host of the container that mounts it (the engine
creates it there on first use, with its size cap). A replica that moves to
another host gets a new, empty volume there: moving data is not done yet.
"""

from __future__ import annotations

from dataclasses import replace

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from engine.volumes.spec import MIN_VOLUME_SIZE
from hostpanel.audit.services import Actor, audited
from hostpanel.errors import Conflict, InvalidRequest
from hostpanel.hosts.services import reconcile_every_host
from hostpanel.tenants.access import require_role
from hostpanel.tenants.locks import lock_tenant
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import Usage, check_quota
from hostpanel.tenants.signals import apps_using
from hostpanel.tenants.storage import storage_use, sum_of
from hostpanel.volumes.models import Volume

MIN_SIZE = MIN_VOLUME_SIZE


def volume_usage(tenant: Tenant) -> Usage:
    """How many volumes the tenant has, and all it stores (the one storage quota, see tenants.storage)."""
    return Usage(volumes=Volume.objects.filter(tenant=tenant).count(), disk_bytes=storage_use(tenant).total)


def visible_volumes(actor: Actor, tenant: Tenant) -> QuerySet[Volume]:
    require_role(actor, tenant, Role.VIEWER)
    return Volume.objects.filter(tenant=tenant)


def create_volume(
    actor: Actor, tenant: Tenant, name: str, size_bytes: int, labels: dict[str, str] | None = None
) -> Volume:
    """A new volume of ``size_bytes`` (with Docker ``labels``); refused over the quota of volumes or
    disk bytes."""
    require_role(actor, tenant, Role.DEVELOPER)
    if size_bytes < MIN_SIZE:
        raise InvalidRequest(f"size_bytes: at least {MIN_SIZE} (4 MiB)")
    with audited(actor, "volume.create", tenant) as entry, transaction.atomic():
        lock_tenant(tenant)  # concurrent creates count one after another
        before = volume_usage(tenant)
        after = replace(before, volumes=before.volumes + 1, disk_bytes=before.disk_bytes + size_bytes)
        check_quota(tenant, before, after)
        try:
            volume = Volume.objects.create(
                tenant=tenant, name=name, size_bytes=size_bytes, labels=dict(labels or {})
            )
        except IntegrityError as exc:
            raise Conflict(f"volume {name!r} exists already") from exc
        entry.obj = volume
    return volume


def delete_volume(actor: Actor, volume: Volume) -> None:
    """Delete a volume no app's current release mounts; the hosts remove its data."""
    tenant = volume.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "volume.delete", tenant, volume), transaction.atomic():
        users = apps_using("volume", volume.name, tenant)
        if users:
            raise Conflict(
                f"volume {volume.name!r} is mounted by app(s) {', '.join(users)}; deploy without it first"
            )
        volume.delete()
        reconcile_every_host()  # the volume's data may be on a host none of the tenant's replicas uses now


def stored_bytes(sender: object, tenant: Tenant, **kwargs: object) -> dict[str, int]:
    """tenants.signals.stored_bytes (connected in VolumesConfig.ready): the tenant's volumes' size caps."""
    return {"volumes": sum_of(Volume.objects.filter(tenant=tenant), "size_bytes")}
