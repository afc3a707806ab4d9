"""Per-app usage: each container's cumulative engine counters become the app's hourly rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.cgroups.usage import Usage as EngineUsage
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.usage import services
from hostpanel.usage.models import AppUsageHour, ContainerUsageCursor
from hostpanel.usage.services import ContainerReading
from tests.hostpanel.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db
GB = 1024**3
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def reading(app: App, cid: str, cpu: float, mem_gb_seconds: float = 0.0) -> ContainerReading:
    return ContainerReading(cid, app.tenant.slug, str(app.pk), EngineUsage(cpu, mem_gb_seconds * GB))


def rows(app: App) -> list[tuple[datetime, float, float]]:
    return list(
        AppUsageHour.objects.filter(app=app)
        .order_by("hour")
        .values_list("hour", "cpu_seconds", "memory_gb_hours")
    )


@pytest.fixture
def web(tenant: Tenant, make_app: Callable[..., App]) -> App:
    return make_app(tenant, "web")


def test_each_containers_growth_goes_into_its_apps_hour(
    web: App, host: Host, tenant: Tenant, make_app: Callable[..., App]
) -> None:
    db = make_app(tenant, "db")
    counted = services.record_apps(
        host, [reading(web, "c1", 10, 3600), reading(web, "c2", 5), reading(db, "d1", 1)], T0
    )
    assert counted == 3
    services.record_apps(
        host,
        [reading(web, "c1", 30, 3 * 3600), reading(web, "c2", 5), reading(db, "d1", 2)],
        T0 + timedelta(minutes=30),
    )
    services.record_apps(
        host,
        [reading(web, "c1", 40, 3 * 3600), reading(web, "c2", 6), reading(db, "d1", 2)],
        T0 + timedelta(minutes=70),
    )
    assert rows(web) == [(T0, 35, 3), (T0 + timedelta(hours=1), 11, 0)]
    assert rows(db) == [(T0, 2, 0), (T0 + timedelta(hours=1), 0, 0)]  # ran, used nothing


def test_a_restarted_container_is_not_counted_twice_nor_negative(web: App, host: Host) -> None:
    services.record_apps(host, [reading(web, "c1", 10)], T0)
    # stopped (crashed, waiting to be restarted): still read, its counters stay
    services.record_apps(host, [reading(web, "c1", 12)], T0 + timedelta(minutes=1))
    # restarted: the engine keeps counting on top of what it had
    services.record_apps(host, [reading(web, "c1", 15)], T0 + timedelta(minutes=2))
    assert rows(web) == [(T0, 15, 0)]
    # the engine's record was reset (counters went back): a new baseline, never a negative hour
    services.record_apps(host, [reading(web, "c1", 4)], T0 + timedelta(minutes=3))
    assert rows(web) == [(T0, 19, 0)]
    assert ContainerUsageCursor.objects.get().cpu_seconds == 4


def test_a_replaced_container_counts_from_its_own_zero(web: App, host: Host) -> None:
    services.record_apps(host, [reading(web, "old", 100)], T0)
    # the replacement runs beside the old one for a moment, then the old one is gone
    services.record_apps(host, [reading(web, "old", 110), reading(web, "new", 2)], T0 + timedelta(minutes=1))
    services.record_apps(host, [reading(web, "new", 7)], T0 + timedelta(minutes=2))
    assert rows(web) == [(T0, 117, 0)]
    assert list(ContainerUsageCursor.objects.values_list("container_id", flat=True)) == ["new"]


def test_a_deleted_apps_history_goes_and_its_leftover_container_is_not_counted(
    web: App, host: Host, admin_actor: Any
) -> None:
    services.record_apps(host, [reading(web, "c1", 10)], T0)
    leftover = reading(web, "c1", 20)  # the agent has not removed the container yet
    deployments.delete_app(admin_actor, web)
    assert not AppUsageHour.objects.exists() and not ContainerUsageCursor.objects.exists()
    assert services.record_apps(host, [leftover], T0 + timedelta(minutes=1)) == 0
    assert not AppUsageHour.objects.exists() and not ContainerUsageCursor.objects.exists()


def test_a_label_naming_another_tenants_app_or_no_app_is_not_counted(web: App, host: Host) -> None:
    other = TenantFactory(slug="other")
    forged = ContainerReading("x1", other.slug, str(web.pk), EngineUsage(50))
    garbage = ContainerReading("x2", web.tenant.slug, "²", EngineUsage(50))  # a digit, not a number
    assert services.record_apps(host, [forged, garbage], T0) == 0
    assert not AppUsageHour.objects.exists() and not ContainerUsageCursor.objects.exists()


def test_the_usage_api_gives_each_apps_hourly_series_to_its_tenant_only(
    api: Any, web: App, host: Host, tenant: Tenant, make_app: Callable[..., App]
) -> None:
    db = make_app(tenant, "db")
    other_host = Host.objects.create(name="h2", cpu_millis=1000, memory_bytes=GB)
    services.record_apps(host, [reading(web, "c1", 30, 1800), reading(db, "d1", 1)], T0)
    services.record_apps(other_host, [reading(web, "c9", 6, 1800)], T0 + timedelta(minutes=5))
    services.record_apps(host, [reading(web, "c1", 40, 1800)], T0 + timedelta(hours=1))
    outsider_tenant = TenantFactory(slug="outsider")
    outsider_app = make_app(outsider_tenant, "web")
    services.record_apps(host, [reading(outsider_app, "o1", 999)], T0)
    viewer = MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    url = f"/api/v1/tenants/{tenant.slug}/usage/?since=2026-03-01T00:00:00Z&until=2026-03-02T00:00:00Z"
    r = api(viewer).get(url)
    assert r.status_code == 200, r.json()
    apps = {a["app"]: a["hours"] for a in r.json()["apps"]}
    assert list(apps) == ["db", "web"]  # the outsider's "web" is not in it
    assert [(h["cpu_seconds"], h["memory_gb_hours"]) for h in apps["web"]] == [(36, 1.0), (10, 0)]
    assert apps["web"][0]["hour"] == "2026-03-01T10:00:00Z"
    assert api(UserFactory()).get(url).status_code == 404
