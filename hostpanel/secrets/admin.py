"""Secrets in the Django admin: names only, never the (encrypted) value."""

from django.contrib import admin

from hostpanel.secrets.models import Secret


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    list_display = ("tenant", "name", "created_at", "updated_at")
    exclude = ("ciphertext",)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
