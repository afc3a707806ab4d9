"""Admin pages (staff): tenants with their quotas (editor applies live), hosts, the audit log."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page
from hostpanel.dashboard.forms import QUOTA_FIELDS, QuotaForm
from hostpanel.dashboard.views.deploy import QUOTA_LABELS
from hostpanel.dashboard.views.host_enrollment import enrollment_rows
from hostpanel.deployments.services import tenant_usage
from hostpanel.errors import ServiceError
from hostpanel.hosts.services import hosts_with_use
from hostpanel.tenants import access
from hostpanel.tenants import services as tenants
from hostpanel.tenants.access import actor_of
from hostpanel.tenants.models import Quota


def _require_staff(request: HttpRequest) -> None:
    access.require_admin(actor_of(request))


@page
def overview(request: HttpRequest) -> HttpResponse:
    _require_staff(request)
    actor = actor_of(request)
    rows = []
    for tenant in access.visible_tenants(actor).select_related("quota"):
        used = asdict(tenant_usage(tenant))
        quota = tenant.quota
        rows.append(
            {
                "tenant": tenant,
                "form": QuotaForm(instance=quota, prefix=tenant.slug),
                "bars": [
                    {
                        "key": key,
                        "label": QUOTA_LABELS[key],
                        "used": used[key],
                        "allowed": getattr(quota, key),
                        "bytes": key.endswith("_bytes"),
                    }
                    for key in QUOTA_FIELDS
                ],
            }
        )
    hosts = hosts_with_use(actor)
    context = {"rows": rows, "hosts": hosts, "section": "staff", "enrollments": enrollment_rows()}
    return render(request, "dashboard/staff.html", context)


@page
@require_POST
def quota_update(request: HttpRequest, slug: str) -> HttpResponse:
    """Apply an admin's quota through the same service the API uses (it pushes it to the hosts)."""
    _require_staff(request)
    actor = actor_of(request)
    tenant = access.get_tenant(actor, slug)
    form = QuotaForm(request.POST, instance=Quota.objects.get(tenant=tenant), prefix=slug)
    if not form.is_valid():
        problems = "; ".join(
            f"{form.fields[k].label if k in form.fields else k}: {' '.join(v)}"
            for k, v in form.errors.items()
        )
        messages.error(request, f"quota of {slug} not saved: {problems}")
        return redirect("dashboard:staff")
    try:
        tenants.update_quota(actor, tenant, **form.values())
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Quota of {slug} saved and sent to the hosts.")
    return redirect("dashboard:staff")
