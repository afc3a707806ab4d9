"""Dashboard actions on an app's custom domains (POST, then back to the app page with a message)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page, require_developer, run_action, tenant_app, tenant_context
from hostpanel.domains import services
from hostpanel.domains.models import Domain
from hostpanel.domains.names import BadName, display, normalise
from hostpanel.errors import NotFound

ACTIONS = ("add", "verify", "certificate", "remove")


@page
@require_POST
def domain_action(request: HttpRequest, slug: str, name: str, action: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    app = tenant_app(ctx, name)
    if action not in ACTIONS:
        raise NotFound(f"no action {action!r}")

    def act() -> str:
        if action == "add":
            domain = services.add_domain(ctx.actor, app, request.POST.get("name", ""))
            return f"{display(domain.name)} added; prove you own it, then press Verify."
        domain = _domain(app.pk, request.POST.get("domain", ""))
        if action == "verify":
            services.verify_domain(ctx.actor, domain)
            return f"{display(domain.name)} is verified and routed to {app.name}."
        if action == "certificate":
            domain = services.check_certificate(ctx.actor, domain)
            return f"{display(domain.name)}: certificate {domain.get_cert_state_display()}."
        services.remove_domain(ctx.actor, domain)
        return f"{display(domain.name)} removed; it no longer answers."

    run_action(request, act)
    return redirect(reverse("dashboard:app", args=[slug, app.name]) + "#app-web")


def _domain(app_id: int, raw: str) -> Domain:
    try:
        name = normalise(raw)
    except BadName as exc:
        raise NotFound("no such domain on this app") from exc
    domain = Domain.objects.filter(app_id=app_id, name=name).select_related("tenant", "app").first()
    if domain is None:
        raise NotFound("no such domain on this app")
    return domain
