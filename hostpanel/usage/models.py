"""Hourly usage per tenant and host and per app and host, the agents' read positions, and the
admin's prices."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class UsageHour(models.Model):
    """What one tenant used on one host during one hour (UTC, the hour's start)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage_hours")
    host = models.ForeignKey("hosts.Host", null=True, on_delete=models.SET_NULL, related_name="+")
    hour = models.DateTimeField(db_index=True)
    cpu_seconds = models.FloatField(default=0.0)
    memory_gb_hours = models.FloatField(default=0.0)
    disk_gb_hours = models.FloatField(default=0.0)

    class Meta:
        ordering = ["tenant", "hour"]
        constraints = [models.UniqueConstraint(fields=["tenant", "host", "hour"], name="usage_hour_unique")]


class CounterCursor(models.Model):
    """The engine's cumulative counters when last collected (what the next collection subtracts)."""

    cpu_seconds = models.FloatField(default=0.0)
    memory_byte_seconds = models.FloatField(default=0.0)
    disk_bytes = models.BigIntegerField(default=0)
    collected_at = models.DateTimeField()

    class Meta:
        abstract = True


class UsageCursor(CounterCursor):
    """The engine's cumulative counters of a tenant on a host when last collected."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "host"], name="usage_cursor_unique")]


class AppUsageHour(models.Model):
    """What one app's containers used on one host during one hour (UTC, the hour's start).

    A view of where the tenant's usage went, not what is billed (that is
    :class:`UsageHour`): it goes with its app.
    """

    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="usage_hours")
    host = models.ForeignKey("hosts.Host", null=True, on_delete=models.SET_NULL, related_name="+")
    hour = models.DateTimeField(db_index=True)
    cpu_seconds = models.FloatField(default=0.0)
    memory_gb_hours = models.FloatField(default=0.0)

    class Meta:
        ordering = ["app", "hour"]
        constraints = [models.UniqueConstraint(fields=["app", "host", "hour"], name="app_usage_hour_unique")]


class ContainerUsageCursor(CounterCursor):
    """The engine's cumulative counters of one container of an app when last collected.

    One per container, not per app: a replaced container starts its own
    counters at zero, so the app's sum would go back.
    """

    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="+")
    container_id = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "container_id"], name="container_usage_cursor_unique")
        ]


class Prices(models.Model):
    """What one unit costs (one row; admins set it)."""

    currency = models.CharField(max_length=8, default="EUR")
    cpu_hour = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0.010000"))
    memory_gb_hour = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0.005000"))
    disk_gb_hour = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0.000100"))
    updated_at = models.DateTimeField(auto_now=True)

    @classmethod
    def current(cls) -> Prices:
        prices, _ = cls.objects.get_or_create(pk=1)
        return prices


class TenantStorage(models.Model):
    """What a tenant stores on one host outside volumes and images: its containers' root file
    system writes (its disk there) and its build cache, as the host agent last reported."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="+")
    rootfs_bytes = models.PositiveBigIntegerField(default=0)
    build_cache_bytes = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "host"], name="tenant_storage_unique")]
