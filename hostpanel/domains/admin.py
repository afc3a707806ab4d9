"""Custom domains in the Django admin: operators see who holds a name and release it (delete).

Deleting goes through the service, so it is audited and the route goes from every proxy at once.
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from hostpanel.domains import services
from hostpanel.domains.models import Domain
from hostpanel.tenants.access import actor_of


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "tenant",
        "app",
        "verified_at",
        "verified_method",
        "cert_state",
        "cert_expires_at",
    )
    list_filter = ("cert_state", "verified_method")
    search_fields = ("name", "tenant__slug", "app__name")
    exclude = ("token",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # domains are added through the services (normalised, one owner, audited)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Domain) -> None:
        services.remove_domain(actor_of(request), obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        for domain in queryset.select_related("tenant"):
            services.remove_domain(actor_of(request), domain)
