"""Apps: the list with live status, an app's page (containers, env, releases) and its buttons."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import (
    TenantContext,
    page,
    require_developer,
    run_action,
    tenant_app,
    tenant_context,
)
from hostpanel.dashboard.status import app_status, statuses
from hostpanel.dashboard.views.usage import day_charts
from hostpanel.deployments import rollout
from hostpanel.deployments import services as deployments
from hostpanel.deployments.changes import health_text, release_changes
from hostpanel.deployments.models import App, Release
from hostpanel.errors import NotFound

SHOWN_RELEASES = 20


@page
def app_list(request: HttpRequest, slug: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    rows = statuses(deployments.visible_apps(ctx.actor, ctx.tenant))
    template = "dashboard/_app_rows.html" if request.headers.get("HX-Request") else "dashboard/apps.html"
    return render(request, template, ctx.template_context() | {"rows": rows, "section": "apps"})


def _containers(app: App) -> list[dict[str, object]]:
    rows = []
    for replica in app.replicas.select_related("host").order_by("index"):
        address = replica.host.address if replica.host else ""
        links = [
            {
                "label": f"{p['container_port']}/{p.get('protocol', 'tcp')}",
                "url": f"http://{address}:{p['host_port']}",
            }
            for p in replica.ports
            if p.get("host_port") and address
        ]
        rows.append({"replica": replica, "links": links})
    return rows


@page
def app_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    app = tenant_app(ctx, name)
    status = app_status(app, app.replicas.all())
    context = ctx.template_context() | {
        "app": app,
        "status": status,
        "containers": _containers(app),
        "section": "apps",
    }
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/_app_live.html", context)
    release = app.current_release
    releases = list(Release.objects.filter(app=app).order_by("-version")[: SHOWN_RELEASES + 1])
    changes = release_changes(releases)
    context |= {
        "release": release,
        "health": health_text(release.health_check) if release else "none",
        "releases": [(r, changes.get(r.pk, [])) for r in releases[:SHOWN_RELEASES]],
        "env": sorted((release.env if release else {}).items()),
        "secrets": release.secrets if release else [],  # names and env names only, never values
    } | day_charts(ctx.actor, app)
    return render(request, "dashboard/app.html", context)


@page
@require_POST
def app_action(request: HttpRequest, slug: str, name: str, action: str) -> HttpResponse:
    """stop, start, restart, scale (replicas=N), rollback (version=N) or delete, through the service."""
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    app = tenant_app(ctx, name)
    if action == "delete":
        run_action(request, lambda: _delete(ctx, app))
        if App.objects.filter(pk=app.pk).exists():  # refused: the message says why
            return redirect("dashboard:app", slug=slug, name=name)
        return redirect("dashboard:apps", slug=slug)

    def change() -> str:
        if action == "stop":
            deployments.set_state(ctx.actor, app, App.State.STOPPED)
        elif action == "start":
            deployments.set_state(ctx.actor, app, App.State.RUNNING)
        elif action == "restart":
            deployments.restart(ctx.actor, app)
        elif action == "scale":
            deployments.scale(ctx.actor, app, _int(request.POST.get("replicas"), "replicas"))
        elif action == "rollback":
            deployments.rollback(ctx.actor, app, _int(request.POST.get("version"), "version"))
        else:
            raise NotFound(f"no action {action!r}")
        if rollout.active_rollout(app) is not None:
            return f"{action.capitalize()} of {name}: rolling out; the old replicas serve until then."
        return f"{action.capitalize()} of {name}: done."

    run_action(request, change)
    return redirect("dashboard:app", slug=slug, name=name)


def _delete(ctx: TenantContext, app: App) -> str:
    deployments.delete_app(ctx.actor, app)
    return f"App {app.name} deleted; its containers are being removed."


def _int(value: str | None, field: str) -> int:
    try:
        return int(value or "")
    except ValueError as exc:
        from hostpanel.errors import InvalidRequest

        raise InvalidRequest(f"{field}: give a whole number") from exc
