"""Per-app usage on the pages: the usage page's 24 h charts per app and the app page's small ones."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from engine.cgroups.usage import Usage as EngineUsage
from hostpanel.dashboard.charts import HEIGHT, PAD, multi_line_chart
from hostpanel.deployments.models import App
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Role, Tenant
from hostpanel.usage import services
from hostpanel.usage.services import ContainerReading
from tests.hostpanel.factories import TenantFactory

pytestmark = pytest.mark.django_db
GB = 1024**3


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def collect(host: Host, app: App, cid: str, cpu: float, when: Any) -> None:
    services.record_apps(
        host, [ContainerReading(cid, app.tenant.slug, str(app.pk), EngineUsage(cpu, GB))], when
    )


def test_multi_line_chart_puts_every_series_on_one_scale_with_missing_hours_at_zero() -> None:
    t0 = timezone.now().replace(minute=0, second=0, microsecond=0)
    chart = multi_line_chart(
        {"web": [(t0, 2.0), (t0 + timedelta(hours=1), 4.0)], "db": [(t0 + timedelta(hours=1), 1.0)]}, "cores"
    )
    assert chart.peak == 4.0 and chart.count == 2 and [line.label for line in chart.lines] == ["web", "db"]
    assert [line.color for line in chart.lines] == [0, 1]
    web_y = [float(p.split(",")[1]) for p in chart.lines[0].points.split()]
    db_y = [float(p.split(",")[1]) for p in chart.lines[1].points.split()]
    assert web_y[1] == PAD  # the peak at the top
    assert db_y[0] == HEIGHT - PAD  # db had no row that hour: zero, at the bottom
    assert multi_line_chart({}, "MiB").count == 0


def test_usage_page_charts_each_apps_last_24_hours(
    tenant: Tenant, host: Host, make_app: Callable[..., App], member: Callable[..., Any]
) -> None:
    web, db = make_app(tenant, "web"), make_app(tenant, "db")
    now = timezone.now()
    collect(host, web, "c1", 3600, now - timedelta(hours=3))
    collect(host, web, "c1", 7200, now - timedelta(hours=2))
    collect(host, db, "d1", 60, now - timedelta(hours=2))
    collect(host, db, "d1", 60, now - timedelta(days=2))  # long ago: not in the charts
    other = TenantFactory(slug="other")
    collect(host, make_app(other, "secret-app"), "o1", 5, now)
    html = signed_in(member(tenant, Role.VIEWER)).get(f"/t/{tenant.slug}/usage/").content.decode()
    section = html[html.index('id="app-usage"') : html.index('id="live-usage"')]
    for chart in ("app-cpu", "app-memory"):
        figure = section[section.index(f'data-chart="{chart}"') :]
        figure = figure[: figure.index("</figure>")]
        assert re.findall(r'data-series="([^"]+)"', figure) == ["db", "web"]
        assert "swatch-1" in figure
    assert "peak 1.000 cores" in section  # web used a whole core-hour in one hour
    assert "secret-app" not in html
    assert 'id="live-usage"' in html  # the live chart stays


def test_usage_page_says_when_no_app_usage_was_recorded(
    tenant: Tenant, make_app: Callable[..., App], member: Callable[..., Any]
) -> None:
    make_app(tenant, "web")
    html = signed_in(member(tenant, Role.VIEWER)).get(f"/t/{tenant.slug}/usage/").content.decode()
    assert "No usage recorded per app in the last 24 hours yet." in html


def test_app_page_shows_its_own_24_hour_chart(
    tenant: Tenant, host: Host, make_app: Callable[..., App], member: Callable[..., Any]
) -> None:
    web, db = make_app(tenant, "web"), make_app(tenant, "db")
    now = timezone.now()
    collect(host, web, "c1", 1800, now - timedelta(hours=1))
    collect(host, db, "d1", 3600 * 5, now - timedelta(hours=1))
    client = signed_in(member(tenant, Role.VIEWER))
    html = client.get(f"/t/{tenant.slug}/apps/web/").content.decode()
    section = html[html.index('id="app-usage"') :]
    section = section[: section.index("</section>")]
    assert section.count('class="series"') == 2  # CPU and memory
    assert "peak 0.500 cores" in section  # its own half core-hour, not db's five
    db_page = client.get(f"/t/{tenant.slug}/apps/db/").content.decode()
    assert "peak 5.000 cores" in db_page
