"""Registry repositories and tags in the Django admin: read-only (push and delete through /v2/)."""

from django.contrib import admin

from hostpanel.registry.models import Repository, Tag


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Repository)
class RepositoryAdmin(_ReadOnly):
    list_display = ("name", "tenant", "created_at")
    search_fields = ("name",)


@admin.register(Tag)
class TagAdmin(_ReadOnly):
    list_display = ("repository", "name", "manifest", "updated_at")
    search_fields = ("repository__name", "name")
