"""Django admin page for hosts (changes to state should go through the API: it moves replicas)."""

from django.contrib import admin

from hostpanel.hosts.models import Host


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "address", "cpu_millis", "memory_bytes", "last_heartbeat")
    list_filter = ("state",)
    readonly_fields = ("last_heartbeat", "engine_root", "engine_instance")
