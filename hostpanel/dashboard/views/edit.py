"""Edit an app: the form starts from the current release; sending it shows what would change,
and confirming makes a new release (the deployments service rolls the replicas to it)."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hostpanel.dashboard.access import TenantContext, page, require_developer, tenant_app, tenant_context
from hostpanel.dashboard.forms import AppForm, initial_from_spec, place_error
from hostpanel.dashboard.views.deploy import quota_rows, secret_rows
from hostpanel.deployments import services as deployments
from hostpanel.deployments.changes import spec_changes, summary
from hostpanel.deployments.models import App
from hostpanel.deployments.services import AppSpec
from hostpanel.errors import Forbidden, NotFound, ServiceError
from hostpanel.images.services import available_images
from hostpanel.networks.services import visible_networks
from hostpanel.secrets.services import visible_secrets
from hostpanel.volumes.services import visible_volumes

# form fields that are not part of the spec (the preview carries them back as hidden inputs)
CONTROL_FIELDS = ("csrfmiddlewaretoken", "confirm", "base_version")


def _form(ctx: TenantContext, app: App, spec: AppSpec, data: object = None) -> AppForm:
    images = [image.reference for image in available_images(ctx.actor, ctx.tenant)]
    if spec.image not in images:
        images.insert(0, spec.image)  # the running image stays choosable (a base image, say)
    secrets = [secret.name for secret in visible_secrets(ctx.actor, ctx.tenant)]
    return AppForm(data, initial=initial_from_spec(spec), images=images, secrets=secrets)


@page
def app_edit(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """GET: the form filled from the current release. POST: the difference to confirm, or errors.
    POST with ``confirm``: the new release (unless the app changed since the preview)."""
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    app = tenant_app(ctx, name)
    if app.current_release is None:
        raise NotFound(f"app {name!r} has no release to edit yet")
    current = AppSpec.from_release(app.current_release)
    form = _form(ctx, app, current, request.POST if request.method == "POST" else None)
    error = ""
    if request.method == "POST" and form.is_valid() and not request.POST.get("back"):
        try:
            spec = deployments.check_room(ctx.actor, app, form.spec(request.POST))
        except (NotFound, Forbidden):
            raise
        except (ServiceError, ValueError) as exc:
            error = place_error(form, exc)
        else:
            changes = spec_changes(current, spec)
            if not changes:
                error = "Nothing to change: this is the current release's spec."
            elif request.POST.get("confirm") and request.POST.get("base_version") == str(
                app.current_release.version
            ):
                return _deploy(request, ctx, app, spec, summary(changes))
            else:
                stale = bool(request.POST.get("confirm"))
                return render(
                    request,
                    "dashboard/edit_confirm.html",
                    ctx.template_context()
                    | {
                        "app": app,
                        "changes": changes,
                        "stale": stale,
                        "base_version": app.current_release.version,
                        "carried": [
                            (key, value)
                            for key, values in request.POST.lists()
                            if key not in CONTROL_FIELDS
                            for value in values
                        ],
                        "section": "apps",
                    },
                    status=409 if stale else 200,
                )
    chosen = {s["name"]: s.get("env") or "" for s in current.secrets}
    if request.method == "POST":
        chosen = {n: request.POST.get(f"secret_env_{n}", "") for n in request.POST.getlist("secret")}
    context = ctx.template_context() | {
        "app": app,
        "form": form,
        "error": error,
        "quota": quota_rows(ctx),
        "secret_rows": secret_rows(form.secret_names, chosen),
        "volume_names": [v.name for v in visible_volumes(ctx.actor, ctx.tenant)],
        "network_names": [n.name for n in visible_networks(ctx.actor, ctx.tenant)],
        "section": "apps",
        # the quota table counts this app's current use: the page's check adds only the growth
        "current_use": asdict(current.usage()) if app.state == App.State.RUNNING else {},
    }
    return render(request, "dashboard/edit.html", context, status=400 if error or form.errors else 200)


def _deploy(request: HttpRequest, ctx: TenantContext, app: App, spec: AppSpec, what: str) -> HttpResponse:
    try:
        release = deployments.deploy(ctx.actor, app, note=f"edit: {what}"[:200], **asdict(spec))
    except (NotFound, Forbidden):
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Release v{release.version} of {app.name} made; rolling it out.")
    return redirect("dashboard:app", slug=ctx.tenant.slug, name=app.name)
