"""The start page: the user's first tenant's apps, or the admin overview."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hostpanel.dashboard.access import page, switchable_tenants
from hostpanel.tenants.access import actor_of


@page
def home(request: HttpRequest) -> HttpResponse:
    """Admins land on the overview, members on their first tenant's apps."""
    if actor_of(request).is_admin:
        return redirect("dashboard:staff")
    tenants = switchable_tenants(request)
    if tenants:
        return redirect("dashboard:apps", slug=tenants[0].slug)
    return render(request, "dashboard/no_tenant.html")


@page
def tenant_root(request: HttpRequest, slug: str) -> HttpResponse:
    return redirect("dashboard:apps", slug=slug)
