"""Django admin pages for tenants (read-mostly: changes should go through the API's services)."""

from django.contrib import admin

from hostpanel.tenants.models import ApiToken, Membership, Quota, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")


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
        "build_time_limit",
    )
