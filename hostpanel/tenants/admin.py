"""Django admin pages for tenants (read-mostly: changes should go through the API's services)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from hostpanel.audit.services import Actor
from hostpanel.tenants import services
from hostpanel.tenants.models import ApiToken, Membership, Quota, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        """Delete through the service, so every host purges the tenant."""
        services.delete_tenant(Actor(user=request.user), obj)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in list(queryset):
            services.delete_tenant(Actor(user=request.user), tenant)  # type: ignore[arg-type]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("tenant", "user", "role")
    list_filter = ("role",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "tenant", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = ("digest", "prefix", "last_used_at")


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = (
        "tenant",
        "cpu_millis",
        "memory_bytes",
        "pids",
        "disk_bytes",
        "containers",
        "volumes",
        "egress_allow",
        "build_time_limit",
    )
