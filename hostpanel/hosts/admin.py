"""Django admin page for hosts (changes to state should go through the API: it moves replicas)."""

from django.contrib import admin

from hostpanel.hosts.models import Host, TenantPurge


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "address", "cpu_millis", "memory_bytes", "last_heartbeat")
    list_filter = ("state",)
    readonly_fields = ("last_heartbeat", "engine_root", "engine_instance")


@admin.register(TenantPurge)
class TenantPurgeAdmin(admin.ModelAdmin):
    """Deleted tenants that hosts still have to purge (read-only: the agents clear them)."""

    list_display = (
        "tenant_slug",
        "host",
        "requested_at",
        "sent_at",
        "attempts",
        "attempted_at",
        "last_error",
    )
    list_filter = ("host",)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
