"""Docker API: a member's client certificates for the tenant (issue, list, revoke) and the
``docker context create`` command that uses them. The private key is shown or downloaded once."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page, run_action, tenant_context
from hostpanel.dockerapi import certs
from hostpanel.errors import Forbidden, NotFound, ServiceError


def _context(request: HttpRequest, slug: str) -> dict[str, object]:
    ctx = tenant_context(request, slug)
    return ctx.template_context() | {
        "certificates": certs.visible_certificates(ctx.actor, ctx.tenant),
        "endpoint": certs.endpoint(),
        "context_name": f"hostpanel-{ctx.tenant.slug}",
        "section": "docker",
    }


@page
def docker_page(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "dashboard/docker.html", _context(request, slug))


@page
@require_POST
def docker_issue(request: HttpRequest, slug: str) -> HttpResponse:
    """Issue a certificate for the signed-in member: a zip download, or the page with the PEM blocks."""
    ctx = tenant_context(request, slug)
    try:
        issued = certs.issue_certificate(ctx.actor, ctx.tenant, request.POST.get("name", ""))
    except (NotFound, Forbidden):
        raise
    except ServiceError as exc:
        context = _context(request, slug) | {"error": exc.message}
        return render(request, "dashboard/docker.html", context, status=exc.status)
    if request.POST.get("format") == "zip":
        response = HttpResponse(issued.zip_bytes(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="docker-{ctx.tenant.slug}.zip"'
    else:
        context = _context(request, slug) | {"issued": issued, "command": issued.context_command()}
        response = render(request, "dashboard/docker.html", context)
    response["Cache-Control"] = "no-store"  # the private key is in it: never kept by a cache
    return response


@page
@require_POST
def docker_revoke(request: HttpRequest, slug: str, certificate_id: int) -> HttpResponse:
    ctx = tenant_context(request, slug)

    def revoke() -> str:
        certificate = certs.revoke_certificate(ctx.actor, ctx.tenant, certificate_id)
        return f"Certificate {certificate.name!r} revoked: the Docker API refuses it from now on."

    run_action(request, revoke)
    return redirect("dashboard:docker", slug)
