"""Django admin pages for apps, releases and replicas: for looking, not changing (use the API)."""

from django.contrib import admin

from hostpanel.deployments.models import App, Release, Replica


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(App)
class AppAdmin(ReadOnlyAdmin):
    list_display = ("name", "tenant", "state", "current_release", "updated_at")
    list_filter = ("state", "tenant")


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ("app", "version", "image", "replicas", "restart_policy", "created_by", "created_at")


@admin.register(Replica)
class ReplicaAdmin(ReadOnlyAdmin):
    list_display = ("container_name", "host", "state", "health", "restart_count", "exit_code", "updated_at")
    list_filter = ("state", "host")
