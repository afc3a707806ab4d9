"""Business rules of usage: collecting the engine's counters into hourly rows, reports with costs.

Each host agent collects periodically (a task on its queue): the engine keeps
cumulative CPU-seconds and memory byte-seconds per tenant and the last disk
size; the difference since the previous collection goes into the current
hour's row. Disk GB-hours are the disk size times the time between
collections.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from hostpanel.audit.services import Actor, audited
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import require_admin, require_role
from hostpanel.usage.models import Prices, UsageCursor, UsageHour

GB = 1024**3


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


def record(host: Host, tenant: Tenant, usage: EngineUsage, now: datetime | None = None) -> Delta:
    """Add what ``tenant`` used on ``host`` since the last collection to the current hour."""
    now = now or timezone.now()
    with transaction.atomic():
        cursor = UsageCursor.objects.select_for_update().filter(tenant=tenant, host=host).first()
        if cursor is None:
            UsageCursor.objects.create(
                tenant=tenant,
                host=host,
                cpu_seconds=usage.cpu_seconds,
                memory_byte_seconds=usage.memory_byte_seconds,
                disk_bytes=usage.disk_bytes,
                collected_at=now,
            )
            # The first collection bills what the engine counted so far.
            delta = Delta(usage.cpu_seconds, usage.memory_byte_seconds / GB / 3600, 0.0)
        else:
            reset = (
                usage.cpu_seconds < cursor.cpu_seconds
                or usage.memory_byte_seconds < cursor.memory_byte_seconds
            )
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
        hour = now.replace(minute=0, second=0, microsecond=0)
        row, _ = UsageHour.objects.select_for_update().get_or_create(tenant=tenant, host=host, hour=hour)
        row.cpu_seconds += delta.cpu_seconds
        row.memory_gb_hours += delta.memory_gb_hours
        row.disk_gb_hours += delta.disk_gb_hours
        row.save()
    return delta


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
        UsageHour.objects.filter(
            tenant=tenant, hour__gte=since.replace(minute=0, second=0, microsecond=0), hour__lt=until
        )
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
    return {"since": since, "until": until, "currency": prices.currency, "hours": rows, "total": totals}


def set_prices(actor: Actor, **values: Any) -> Prices:
    require_admin(actor)
    with audited(actor, "prices.update", None) as entry:
        prices = Prices.current()
        for key, value in values.items():
            setattr(prices, key, value)
        prices.save()
        entry.obj = prices
    return prices
