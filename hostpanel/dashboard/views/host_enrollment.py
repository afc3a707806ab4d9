"""Staff pages for enrollment: add a host (its one-time join command, shown once), revoke one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page
from hostpanel.errors import ServiceError
from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host
from hostpanel.tenants import access
from hostpanel.tenants.access import actor_of


def enrollment_rows() -> list[dict[str, Any]]:
    """Each host with its enrollment state, for the staff page's Enrollment card."""
    states = enrollment.enrollment_states()
    return [{"host": h, "state": states[h.pk]} for h in Host.objects.all()]


@page
@require_POST
def host_add(request: HttpRequest) -> HttpResponse:
    """Create a pending host; answer its join command on this page (never stored, never redirected)."""
    actor = actor_of(request)
    access.require_admin(actor)
    try:
        invitation = enrollment.add_host(actor, request.POST.get("name", "").strip())
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:staff")
    response = render(request, "dashboard/host_join.html", {"invitation": invitation, "section": "staff"})
    response["Cache-Control"] = "no-store"
    return response


@page
@require_POST
def host_revoke(request: HttpRequest, name: str) -> HttpResponse:
    actor = actor_of(request)
    access.require_admin(actor)
    try:
        enrollment.revoke(actor, name)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Host {name}: credentials revoked (its Redis user and token no longer work)."
        )
    return redirect("dashboard:staff")
