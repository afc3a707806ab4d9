"""Usage: the engine's cumulative counters become hourly rows with costs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.cgroups.usage import Usage as EngineUsage
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.usage import services
from hostpanel.usage.models import Prices, UsageHour
from tests.hostpanel.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
GB = 1024**3
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_deltas_go_into_the_hour_they_were_collected_in(tenant: Tenant, host: Host) -> None:
    services.record(host, tenant, EngineUsage(10, GB * 3600, disk_bytes=2 * GB), T0 + timedelta(minutes=10))
    d = services.record(
        host, tenant, EngineUsage(40, 3 * GB * 3600, disk_bytes=2 * GB), T0 + timedelta(minutes=40)
    )
    assert d.cpu_seconds == 30 and d.memory_gb_hours == 2 and d.disk_gb_hours == pytest.approx(1.0)
    services.record(host, tenant, EngineUsage(50, 3 * GB * 3600, disk_bytes=0), T0 + timedelta(minutes=70))
    rows = list(UsageHour.objects.order_by("hour").values_list("hour", "cpu_seconds", "memory_gb_hours"))
    assert rows == [(T0, 40, 3), (T0 + timedelta(hours=1), 10, 0)]


def test_a_reset_engine_counter_starts_a_new_baseline(tenant: Tenant, host: Host) -> None:
    services.record(host, tenant, EngineUsage(100), T0)
    d = services.record(host, tenant, EngineUsage(5), T0 + timedelta(minutes=1))
    assert d.cpu_seconds == 5


def test_report_sums_hosts_and_prices_it(api: Any, tenant: Tenant, host: Host) -> None:
    other = Host.objects.create(name="h2", cpu_millis=1000, memory_bytes=GB)
    services.record(host, tenant, EngineUsage(3600, 10 * GB * 3600), T0)
    services.record(other, tenant, EngineUsage(3600, 0), T0 + timedelta(minutes=5))
    Prices.objects.update_or_create(pk=1, defaults={"cpu_hour": "0.02", "memory_gb_hour": "0.01"})
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    r = api(viewer).get(
        f"/api/v1/tenants/{tenant.slug}/usage/?since=2026-03-01T00:00:00Z&until=2026-03-02T00:00:00Z"
    )
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["total"]["cpu_seconds"] == 7200 and body["total"]["memory_gb_hours"] == 10
    assert body["total"]["cost"] == "0.1400" and len(body["hours"]) == 1
    assert api(UserFactory()).get(f"/api/v1/tenants/{tenant.slug}/usage/").status_code == 404
    assert api(viewer).get(f"/api/v1/tenants/{tenant.slug}/usage/?since=yesterday").status_code == 400


def test_prices_everyone_reads_admins_write(api: Any, admin_user: Any, tenant: Tenant) -> None:
    user = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    assert api(user).get("/api/v1/prices/").json()["currency"] == "EUR"
    assert api(user).patch("/api/v1/prices/", {"cpu_hour": "1"}, format="json").status_code == 403
    r = api(admin_user).patch("/api/v1/prices/", {"cpu_hour": "0.5", "currency": "USD"}, format="json")
    assert r.status_code == 200 and r.json()["currency"] == "USD"
