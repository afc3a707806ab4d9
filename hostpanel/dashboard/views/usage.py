"""Usage: CPU and memory over time (tenant and per app), quota bars, the month's usage and cost."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from hostpanel.audit.services import Actor
from hostpanel.dashboard.access import page, tenant_context
from hostpanel.dashboard.charts import LineChart, Points, line_chart, multi_line_chart
from hostpanel.dashboard.views.deploy import quota_rows
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import App, Replica
from hostpanel.errors import ServiceError
from hostpanel.usage import services as usage


@page
def usage_page(request: HttpRequest, slug: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    now = timezone.now()
    day = usage.report(ctx.actor, ctx.tenant, now - timedelta(days=1), now)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = usage.report(ctx.actor, ctx.tenant, month_start, now)
    hours = day["hours"]
    cpu, memory = cpu_and_memory(hours)
    per_app = {a["app"]: cpu_and_memory(a["hours"]) for a in day["apps"]}
    apps: list[dict[str, Any]] = []
    for app in deployments.visible_apps(ctx.actor, ctx.tenant):
        release = app.current_release
        running = app.replicas.filter(state="running").count()
        apps.append(
            {
                "app": app,
                "running": running,
                "cpu_millis": running * (release.cpu_millis if release else 0),
                "memory_bytes": running * (release.memory_bytes if release else 0),
            }
        )
    context = ctx.template_context() | {
        "cpu_chart": line_chart(cpu, unit="cores"),
        "memory_chart": line_chart(memory, unit="MiB"),
        "app_cpu_chart": multi_line_chart({name: c for name, (c, _) in per_app.items()}, unit="cores"),
        "app_memory_chart": multi_line_chart({name: m for name, (_, m) in per_app.items()}, unit="MiB"),
        "quota": quota_rows(ctx),
        "month": month,
        "day": day,
        "apps": apps,
        "section": "usage",
    }
    return render(request, "dashboard/usage.html", context)


def cpu_and_memory(hours: list[dict[str, Any]]) -> tuple[Points, Points]:
    """Hourly rows as chart series: average cores busy (CPU-seconds in an hour / 3600) and
    average MiB held (GB-hours in an hour = GB held)."""
    cpu = [(h["hour"], h["cpu_seconds"] / 3600) for h in hours]
    memory = [(h["hour"], h["memory_gb_hours"] * 1024) for h in hours]
    return cpu, memory


def day_charts(actor: Actor, app: App) -> dict[str, LineChart]:
    """The app page's small charts of the app's last 24 hours."""
    now = timezone.now()
    cpu, memory = cpu_and_memory(usage.app_report(actor, app, now - timedelta(days=1), now))
    return {
        "usage_cpu_chart": line_chart(cpu, unit="cores"),
        "usage_memory_chart": line_chart(memory, unit="MiB"),
    }


MAX_LIVE_CONTAINERS = 50


@page
def usage_live(request: HttpRequest, slug: str) -> JsonResponse:
    """One reading of every running container of the tenant, summed per app (the page charts the
    differences between readings, so CPU is a rate and memory a level over time)."""
    ctx = tenant_context(request, slug)
    apps: dict[str, dict[str, float]] = {}
    unavailable = 0
    replicas = Replica.objects.filter(app__tenant=ctx.tenant, state=Replica.State.RUNNING)
    for replica in replicas.select_related("app__tenant", "host").order_by("app__name", "index")[
        :MAX_LIVE_CONTAINERS
    ]:
        try:
            reading = deployments.container_stats(ctx.actor, replica)
        except ServiceError:  # its host did not answer in time: this reading goes without it
            unavailable += 1
            continue
        cgroup = reading.get("cgroup") or {}
        totals = apps.setdefault(replica.app.name, {"cpu_ns": 0.0, "memory_bytes": 0.0, "containers": 0})
        totals["cpu_ns"] += cgroup.get("cpu_usage_ns", 0)
        totals["memory_bytes"] += cgroup.get("memory_usage", 0)
        totals["containers"] += 1
    return JsonResponse({"at": time.time(), "apps": apps, "unavailable": unavailable})
