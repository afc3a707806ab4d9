"""The audit log: all tenants for admins, a tenant's own for its owners; filterable."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hostpanel.audit.models import AuditLog
from hostpanel.dashboard.access import page, tenant_context
from hostpanel.tenants.access import actor_of, require_admin
from hostpanel.tenants.models import Role

PAGE_SIZE = 100


def _filtered(request: HttpRequest, entries: QuerySet[AuditLog]) -> QuerySet[AuditLog]:
    for field in ("action", "result", "actor_name"):
        value = request.GET.get(field, "").strip()
        if value:
            entries = entries.filter(**{f"{field}__icontains" if field != "result" else field: value})
    return entries


def _render(request: HttpRequest, entries: QuerySet[AuditLog], context: dict[str, object]) -> HttpResponse:
    entries = _filtered(request, entries.select_related("tenant"))
    context |= {
        "entries": entries[:PAGE_SIZE],
        "filters": {f: request.GET.get(f, "") for f in ("action", "result", "actor_name")},
        "results": AuditLog.Result.choices,
    }
    return render(request, "dashboard/audit.html", context)


@page
def tenant_audit(request: HttpRequest, slug: str) -> HttpResponse:
    ctx = tenant_context(request, slug, Role.OWNER)
    entries = AuditLog.objects.filter(tenant=ctx.tenant)
    return _render(request, entries, ctx.template_context() | {"section": "audit"})


@page
def staff_audit(request: HttpRequest) -> HttpResponse:
    require_admin(actor_of(request))
    entries = AuditLog.objects.all()
    tenant = request.GET.get("tenant", "").strip()
    if tenant:
        entries = entries.filter(tenant__slug=tenant)
    return _render(request, entries, {"section": "staff-audit", "tenant_filter": tenant, "all_tenants": True})
