"""The deploy form (with the tenant's remaining quota) and the live progress of a deploy."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hostpanel.dashboard.access import TenantContext, page, require_developer, tenant_app, tenant_context
from hostpanel.dashboard.forms import DeployForm, place_error
from hostpanel.dashboard.status import app_status
from hostpanel.deployments import services as deployments
from hostpanel.errors import Conflict, Forbidden, NotFound, ServiceError
from hostpanel.images.services import available_images
from hostpanel.networks.models import DEFAULT_NAME as DEFAULT_NETWORK
from hostpanel.networks.services import visible_networks
from hostpanel.secrets.services import visible_secrets
from hostpanel.tenants.models import Quota, Tenant
from hostpanel.tenants.storage import storage_use
from hostpanel.volumes.services import visible_volumes

QUOTA_LABELS = {
    "cpu_millis": "CPU",
    "memory_bytes": "Memory",
    "pids": "Processes",
    "containers": "Containers",
    "volumes": "Volumes",
    "disk_bytes": "Storage",
}


def quota_rows(ctx: TenantContext) -> list[dict[str, Any]]:
    """Each quota resource: used (what running apps and volumes ask for), allowed, remaining."""
    quota = Quota.objects.get(tenant=ctx.tenant)
    used = asdict(deployments.tenant_usage(ctx.tenant))
    return [
        {
            "key": key,
            "label": label,
            "used": used[key],
            "allowed": getattr(quota, key),
            "remaining": max(getattr(quota, key) - used[key], 0),
            "bytes": key.endswith("_bytes"),
            "parts": storage_parts(ctx.tenant) if key == "disk_bytes" else [],
        }
        for key, label in QUOTA_LABELS.items()
    ]


def storage_parts(tenant: Tenant) -> list[tuple[str, int]]:
    """What the storage quota's use is made of, as (label, bytes)."""
    use = storage_use(tenant)
    return [
        ("volumes", use.volumes),
        ("images", use.images),
        ("registry", use.registry),
        ("container files", use.rootfs),
        ("build cache", use.build_cache),
    ]


def secret_rows(names: list[str], chosen: dict[str, str]) -> list[dict[str, Any]]:
    """The form's secret rows: each secret of the tenant, ticked or not, with its env name."""
    return [{"name": n, "checked": n in chosen, "env": chosen.get(n, "")} for n in names]


@page
def deploy_form(request: HttpRequest, slug: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    images = [image.reference for image in available_images(ctx.actor, ctx.tenant)]
    secrets = [secret.name for secret in visible_secrets(ctx.actor, ctx.tenant)]
    form = DeployForm(
        request.POST or None, images=images, secrets=secrets, initial={"networks": DEFAULT_NETWORK}
    )
    error = existing = ""
    if request.method == "POST" and form.is_valid():
        try:
            spec = form.spec(request.POST)
            app = deployments.create_app(ctx.actor, ctx.tenant, form.cleaned_data["name"], spec)
        except (NotFound, Forbidden):
            raise
        except Conflict as exc:  # the name is taken: changing that app is what its edit page is for
            error, name = exc.message, form.cleaned_data["name"]
            if deployments.visible_apps(ctx.actor, ctx.tenant).filter(name=name).exists():
                existing = name
        except (ServiceError, ValueError) as exc:
            error = place_error(form, exc)
        else:
            messages.success(request, f"App {app.name} created; deploying.")
            return redirect("dashboard:progress", slug=slug, name=app.name)
    context = ctx.template_context() | {
        "form": form,
        "error": error,
        "existing": existing,
        "quota": quota_rows(ctx),
        "secret_rows": secret_rows(
            secrets,
            {n: request.POST.get(f"secret_env_{n}", "") for n in request.POST.getlist("secret")},
        ),
        "volume_names": [v.name for v in visible_volumes(ctx.actor, ctx.tenant)],
        "network_names": [n.name for n in visible_networks(ctx.actor, ctx.tenant)],
        "section": "deploy",
    }
    return render(request, "dashboard/deploy.html", context, status=400 if error or form.errors else 200)


@page
def deploy_progress(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """Replicas placed / on their way / running, polled until the app settles."""
    ctx = tenant_context(request, slug)
    app = tenant_app(ctx, name)
    replicas = list(app.replicas.select_related("host").order_by("index"))
    context = ctx.template_context() | {
        "app": app,
        "status": app_status(app, replicas),
        "replicas": replicas,
        "section": "deploy",
    }
    template = "dashboard/_progress.html" if request.headers.get("HX-Request") else "dashboard/progress.html"
    return render(request, template, context)
