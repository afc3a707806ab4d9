"""Business rules of usage: collecting the engine's counters into hourly rows, reports with costs.

Each host agent collects periodically (a task on its queue): the engine keeps
cumulative CPU-seconds and memory byte-seconds per tenant and the last disk
size; the difference since the previous collection goes into the current
hour's row. Disk GB-hours are the disk size times the time between
collections. The same is done per app from the engine's per-container
counters (one cursor per container), into hourly rows per app that the
charts and the report's ``apps`` series show.

A host agent sends one :class:`HostSample` through ``POST /internal/v1/host/usage``
(hostpanel/usage/internal.py), where :func:`record_host_report` first keeps only the tenants and
apps that host may speak for (:func:`sampled_tenant_ids`, :func:`storage_tenant_ids`,
:func:`reported_app_ids`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from django.db import transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from hostpanel.audit.services import Actor, audited
from hostpanel.deployments.models import App, Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.access import require_admin, require_role
from hostpanel.tenants.models import Role, Tenant
from hostpanel.usage.models import (
    AppUsageHour,
    ContainerUsageCursor,
    CounterCursor,
    Prices,
    UsageCursor,
    UsageHour,
)
from hostpanel.usage.signals import storing_tenants
from hostpanel.usage.storage import record_tenant_storage

GB = 1024**3
C = TypeVar("C", bound=CounterCursor)


class EngineUsage(Protocol):
    """What collection needs from a tenant's engine usage record."""

    cpu_seconds: float
    memory_byte_seconds: float
    disk_bytes: int


@dataclass(frozen=True)
class Delta:
    cpu_seconds: float
    memory_gb_hours: float
    disk_gb_hours: float


def _advance(cursors: QuerySet[C], usage: EngineUsage, now: datetime, **key: Any) -> Delta:
    """What the counters of ``usage`` grew by since the cursor ``key`` (created on first sight) saw
    them, moving the cursor on. Call inside a transaction.

    The counters are cumulative; one that went back (the engine's record was
    reset) starts a new baseline at zero instead of going negative. The first
    collection counts what the engine counted so far.
    """
    cursor = cursors.select_for_update().filter(**key).first()
    if cursor is None:
        cursors.create(
            **key,
            cpu_seconds=usage.cpu_seconds,
            memory_byte_seconds=usage.memory_byte_seconds,
            disk_bytes=usage.disk_bytes,
            collected_at=now,
        )
        return Delta(usage.cpu_seconds, usage.memory_byte_seconds / GB / 3600, 0.0)
    reset = usage.cpu_seconds < cursor.cpu_seconds or usage.memory_byte_seconds < cursor.memory_byte_seconds
    base_cpu = 0.0 if reset else cursor.cpu_seconds
    base_mem = 0.0 if reset else cursor.memory_byte_seconds
    elapsed = max((now - cursor.collected_at).total_seconds(), 0.0)
    delta = Delta(
        cpu_seconds=usage.cpu_seconds - base_cpu,
        memory_gb_hours=(usage.memory_byte_seconds - base_mem) / GB / 3600,
        disk_gb_hours=cursor.disk_bytes / GB * elapsed / 3600,
    )
    cursor.cpu_seconds, cursor.memory_byte_seconds = usage.cpu_seconds, usage.memory_byte_seconds
    cursor.disk_bytes, cursor.collected_at = usage.disk_bytes, now
    cursor.save()
    return delta


def _hour_of(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def record(host: Host, tenant: Tenant, usage: EngineUsage, now: datetime | None = None) -> Delta:
    """Add what ``tenant`` used on ``host`` since the last collection to the current hour."""
    now = now or timezone.now()
    with transaction.atomic():
        delta = _advance(UsageCursor.objects.all(), usage, now, tenant=tenant, host=host)
        row, _ = UsageHour.objects.select_for_update().get_or_create(
            tenant=tenant, host=host, hour=_hour_of(now)
        )
        row.cpu_seconds += delta.cpu_seconds
        row.memory_gb_hours += delta.memory_gb_hours
        row.disk_gb_hours += delta.disk_gb_hours
        row.save()
    return delta


@dataclass(frozen=True)
class ContainerReading:
    """One engine container's accumulated usage and the labels that say whose it is."""

    container_id: str
    tenant: str  # the tenant slug the engine runs it for
    app_id: str  # the app label the agent gave it
    usage: EngineUsage


def record_apps(
    host: Host,
    readings: Iterable[ContainerReading],
    now: datetime | None = None,
    *,
    present: Iterable[str] | None = None,
) -> int:
    """Add what each app's containers on ``host`` used since the last collection to the app's
    current hour; returns how many containers were counted.

    Each container has its own cursor, so a restarted container (its engine
    counters keep growing) and a replaced one (a new container, counted from
    its zero) never count twice or go back. A reading whose app is gone, or
    belongs to another tenant than the container's, is not counted. Cursors of
    containers no longer on the host (not among ``present``, by default the readings') are
    dropped.
    """
    now = now or timezone.now()
    readings = list(readings)
    kept = {r.container_id for r in readings} if present is None else set(present)
    readings = [r for r in readings if r.app_id.isascii() and r.app_id.isdigit()]
    apps = {
        str(app.pk): app
        for app in App.objects.filter(pk__in={int(r.app_id) for r in readings}).select_related("tenant")
    }
    counted = 0
    with transaction.atomic():
        for reading in readings:
            app = apps.get(reading.app_id)
            if app is None or app.tenant.slug != reading.tenant:
                continue
            delta = _advance(
                ContainerUsageCursor.objects.all(),
                reading.usage,
                now,
                app=app,
                host=host,
                container_id=reading.container_id,
            )
            row, _ = AppUsageHour.objects.select_for_update().get_or_create(
                app=app, host=host, hour=_hour_of(now)
            )
            row.cpu_seconds += delta.cpu_seconds
            row.memory_gb_hours += delta.memory_gb_hours
            row.save()
            counted += 1
        ContainerUsageCursor.objects.filter(host=host).exclude(container_id__in=kept).delete()
    return counted


@dataclass(frozen=True)
class TenantReading:
    """What the engine counted of one tenant (by slug) on a host: its usage counters (None: only
    its storage is reported) and what it stores there (root file system writes, build cache)."""

    tenant: str
    usage: EngineUsage | None
    rootfs_bytes: int
    build_cache_bytes: int


@dataclass(frozen=True)
class HostSample:
    """One collection of a host's engine: its tenants' readings and its app containers'."""

    tenants: list[TenantReading]
    containers: list[ContainerReading]


def sampled_tenant_ids(host: Host) -> set[int]:
    """The tenants whose usage ``host`` collects: those with replicas placed on it, and those
    collected there before (a usage cursor), so a tenant whose apps moved away is billed up to
    its last sample there."""
    ids = set(Replica.objects.filter(host=host).values_list("app__tenant_id", flat=True))
    return ids | set(UsageCursor.objects.filter(host=host).values_list("tenant_id", flat=True))


def storage_tenant_ids(host: Host, sampled: set[int] | None = None) -> set[int]:
    """The tenants whose storage on ``host`` counts against their storage quota: those whose usage
    it samples (``sampled``, by default :func:`sampled_tenant_ids`) and those the apps above add
    (:data:`signals.storing_tenants`: builds, the tenants that built there, whose build cache it
    keeps)."""
    ids = sampled_tenant_ids(host) if sampled is None else set(sampled)
    for _, more in storing_tenants.send(sender=Host, host=host):
        ids |= set(more)
    return ids


def _slugs(ids: set[int]) -> set[str]:
    return set(Tenant.objects.filter(pk__in=ids).values_list("slug", flat=True))


def usage_tenants(sender: object, host: Host, **kwargs: Any) -> dict[str, list[str]]:
    """Answers ``deployments.desired.document_fields``: ``usage_tenants``, the slugs of the
    tenants whose usage ``host`` samples (:func:`sampled_tenant_ids`), and ``storage_tenants``,
    those whose storage it reports (:func:`storage_tenant_ids`, the former included)."""
    sampled = sampled_tenant_ids(host)
    return {
        "usage_tenants": sorted(_slugs(sampled)),
        "storage_tenants": sorted(_slugs(storage_tenant_ids(host, sampled))),
    }


def reported_app_ids(host: Host) -> set[int]:
    """The apps whose containers' usage ``host`` may report: replicas placed on it, or a container
    usage cursor there (a container counted before, until it is gone)."""
    ids = set(Replica.objects.filter(host=host).values_list("app_id", flat=True))
    return ids | set(ContainerUsageCursor.objects.filter(host=host).values_list("app_id", flat=True))


def record_sample(
    host: Host, sample: HostSample, now: datetime | None = None, *, present: Iterable[str] | None = None
) -> int:
    """Write one collection of ``host``: each tenant's usage into its hour (:func:`record`) and its
    storage share (:func:`record_tenant_storage`), each app container's into its app's hour
    (:func:`record_apps`; ``present`` as there). Readings of unknown tenants are skipped. Returns
    how many tenants' usage was recorded. The one writer of the agents' samples."""
    now = now or timezone.now()
    tenants = {t.slug: t for t in Tenant.objects.filter(slug__in={r.tenant for r in sample.tenants})}
    counted = 0
    with transaction.atomic():
        for reading in sample.tenants:
            tenant = tenants.get(reading.tenant)
            if tenant is None:
                continue
            if reading.usage is not None:
                record(host, tenant, reading.usage, now)
                counted += 1
            record_tenant_storage(host, tenant, reading.rootfs_bytes, reading.build_cache_bytes)
        record_apps(host, sample.containers, now, present=present)
    return counted


def record_host_report(host: Host, sample: HostSample, now: datetime | None = None) -> dict[str, Any]:
    """Write what an enrolled host reported of its engine (``POST /internal/v1/host/usage``), but
    only for what that host may speak for: a tenant's usage and storage for tenants of
    :func:`sampled_tenant_ids`, a tenant's storage only (a reading without usage) for those of
    :func:`storage_tenant_ids`, containers of apps of :func:`reported_app_ids` labelled with
    their own app's tenant, and no container id another app counts on this host already.
    Anything else is ignored and named in the answer (``ignored``), never written."""
    sampled = sampled_tenant_ids(host)
    may_use, may_store = _slugs(sampled), _slugs(storage_tenant_ids(host, sampled))
    apps = dict(App.objects.filter(pk__in=reported_app_ids(host)).values_list("pk", "tenant__slug"))
    taken = dict(ContainerUsageCursor.objects.filter(host=host).values_list("container_id", "app_id"))

    def allowed(reading: TenantReading) -> bool:
        return reading.tenant in (may_store if reading.usage is None else may_use)

    tenants = [r for r in sample.tenants if allowed(r)]
    containers: list[ContainerReading] = []
    ignored: list[str] = []
    for reading in sample.containers:
        app_id = int(reading.app_id)
        mine = apps.get(app_id) == reading.tenant and taken.get(reading.container_id, app_id) == app_id
        if mine:
            containers.append(reading)
        else:
            ignored.append(reading.container_id)
    present = [r.container_id for r in sample.containers]  # an ignored one keeps its cursor
    counted = record_sample(host, HostSample(tenants, containers), now, present=present)
    return {
        "tenants": counted,
        "containers": len(containers),
        "ignored": {
            "tenants": [r.tenant for r in sample.tenants if not allowed(r)],
            "containers": ignored,
        },
    }


def cost(cpu_seconds: float, memory_gb_hours: float, disk_gb_hours: float, prices: Prices) -> Decimal:
    total = (
        Decimal(str(cpu_seconds / 3600)) * prices.cpu_hour
        + Decimal(str(memory_gb_hours)) * prices.memory_gb_hour
        + Decimal(str(disk_gb_hours)) * prices.disk_gb_hour
    )
    return total.quantize(Decimal("0.0001"))


def report(actor: Actor, tenant: Tenant, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Hourly usage of the tenant (all hosts summed) between ``since`` and ``until``, with costs."""
    require_role(actor, tenant, Role.VIEWER)
    until = until or timezone.now()
    since = since or until - timedelta(days=1)
    prices = Prices.current()
    hours = (
        UsageHour.objects.filter(tenant=tenant, hour__gte=_hour_of(since), hour__lt=until)
        .values("hour")
        .annotate(cpu=Sum("cpu_seconds"), mem=Sum("memory_gb_hours"), disk=Sum("disk_gb_hours"))
        .order_by("hour")
    )
    rows = [
        {
            "hour": h["hour"],
            "cpu_seconds": round(h["cpu"], 3),
            "memory_gb_hours": round(h["mem"], 6),
            "disk_gb_hours": round(h["disk"], 6),
            "cost": str(cost(h["cpu"], h["mem"], h["disk"], prices)),
        }
        for h in hours
    ]
    totals = {
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 3),
        "memory_gb_hours": round(sum(r["memory_gb_hours"] for r in rows), 6),
        "disk_gb_hours": round(sum(r["disk_gb_hours"] for r in rows), 6),
    }
    totals["cost"] = str(
        cost(totals["cpu_seconds"], totals["memory_gb_hours"], totals["disk_gb_hours"], prices)
    )
    return {
        "since": since,
        "until": until,
        "currency": prices.currency,
        "hours": rows,
        "total": totals,
        "apps": app_hours(tenant, since, until),
    }


def app_report(actor: Actor, app: App, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One app's hourly CPU-seconds and memory GB-hours between ``since`` and ``until``."""
    require_role(actor, app.tenant, Role.VIEWER)
    found = app_hours(app.tenant, since, until, app=app)
    return found[0]["hours"] if found else []


def app_hours(
    tenant: Tenant, since: datetime, until: datetime, *, app: App | None = None
) -> list[dict[str, Any]]:
    """Each of the tenant's apps (or just ``app``) with recorded usage between ``since`` and
    ``until``: its hourly CPU-seconds and memory GB-hours (all hosts summed), apps by name."""
    rows = AppUsageHour.objects.filter(app__tenant=tenant, hour__gte=_hour_of(since), hour__lt=until)
    if app is not None:
        rows = rows.filter(app=app)
    hours = (
        rows.values("app__name", "hour")
        .annotate(cpu=Sum("cpu_seconds"), mem=Sum("memory_gb_hours"))
        .order_by("app__name", "hour")
    )
    apps: dict[str, list[dict[str, Any]]] = {}
    for h in hours:
        apps.setdefault(h["app__name"], []).append(
            {"hour": h["hour"], "cpu_seconds": round(h["cpu"], 3), "memory_gb_hours": round(h["mem"], 6)}
        )
    return [{"app": name, "hours": series} for name, series in apps.items()]


def set_prices(actor: Actor, **values: Any) -> Prices:
    require_admin(actor)
    with audited(actor, "prices.update", None) as entry:
        prices = Prices.current()
        for key, value in values.items():
            setattr(prices, key, value)
        prices.save()
        entry.obj = prices
    return prices
