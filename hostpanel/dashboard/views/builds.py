"""Builds: the tenant's builds with their status, the "new build" form, and one build's live output.

The output page shows what the build stored so far, then follows the log stream
``build/<id>`` with the live-log viewer (static/js/logs.js); the status part is
polled (htmx) until the build ends, and its last answer swaps in the complete
stored output, so nothing that was printed between the page load and the
WebSocket's start stays missing.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hostpanel.builds import services
from hostpanel.builds.forms import BuildForm
from hostpanel.builds.models import Build
from hostpanel.dashboard.access import TenantContext, page, require_developer, tenant_context
from hostpanel.errors import Forbidden, NotFound, ServiceError

FINISHED = (Build.Status.SUCCEEDED, Build.Status.FAILED)
LISTED = 100


def tenant_build(ctx: TenantContext, build_id: int) -> Build:
    """A build of the page's tenant (another tenant's: 404)."""
    build = (
        Build.objects.filter(pk=build_id, tenant=ctx.tenant)
        .select_related("image", "host", "created_by")
        .first()
    )
    if build is None:
        raise Http404(f"no build {build_id} in tenant {ctx.tenant.slug!r}")
    return build


@page
def build_list(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the builds and (developers) the form; POST: start a build and go to its output."""
    ctx = tenant_context(request, slug)
    form: BuildForm | None = None
    error = ""
    if request.method == "POST":
        require_developer(ctx)
        form = BuildForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                build = services.start_build(ctx.actor, ctx.tenant, **form.start_arguments())
            except (NotFound, Forbidden):
                raise
            except ServiceError as exc:
                error = exc.message
            except ValueError as exc:
                error = str(exc)
            else:
                messages.success(request, f"Build {build.pk} of {build.reference} queued on {build.host}.")
                return redirect("dashboard:build", slug=slug, build_id=build.pk)
    elif ctx.can_act:
        again = request.GET.get("from", "")
        form = BuildForm(
            initial=BuildForm.initial_from(tenant_build(ctx, int(again))) if again.isdigit() else {}
        )
    builds = services.list_builds(ctx.actor, ctx.tenant).select_related("image", "created_by")[:LISTED]
    context = ctx.template_context() | {
        "builds": builds,
        "form": form,
        "error": error,
        "section": "builds",
    }
    failed = bool(error) or (form is not None and form.is_bound and bool(form.errors))
    return render(request, "builds/builds.html", context, status=400 if failed else 200)


@page
def build_detail(request: HttpRequest, slug: str, build_id: int) -> HttpResponse:
    """One build: its options, status and output (live while it runs). htmx polls the status part."""
    ctx = tenant_context(request, slug)
    build = tenant_build(ctx, build_id)
    context = ctx.template_context() | {
        "build": build,
        "finished": build.status in FINISHED,
        "section": "builds",
    }
    if request.headers.get("HX-Request"):
        return render(request, "builds/_status.html", context | {"swap_output": True})
    return render(request, "builds/build.html", context)
