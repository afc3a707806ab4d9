"""The one tenant-scoping helper every tenant resource uses.

``/api/v1/tenants/<slug>/<resource>/``: the tenant comes from the URL and is
resolved through :func:`hostpanel.tenants.access.get_tenant`, so a tenant the
caller is not a member of (or that its token is not for) is a 404; objects are
then looked up only inside that tenant's queryset (another tenant's object is
a 404 too); the method's role (``read_role``/``write_role``/``action_roles``)
is then required (a 403 when the member's role is lower).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from hostpanel.audit.services import Actor
from hostpanel.tenants.access import actor_of, get_tenant, require_admin
from hostpanel.tenants.models import Role


class ActorMixin:
    request: Request

    @property
    def actor(self) -> Actor:
        cached = getattr(self, "_actor", None)
        if cached is None:
            cached = self._actor = actor_of(self.request)
        return cached


class TenantScopedViewSet(ActorMixin, viewsets.GenericViewSet):
    """Base of every ``/tenants/<slug>/...`` viewset: scoping and roles in one place."""

    tenant_field = "tenant"  # the queryset's path to the tenant
    read_role: str = Role.VIEWER
    write_role: str = Role.DEVELOPER
    action_roles: dict[str, str] = {}
    lookup_value_regex = "[^/]+"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # 404 for outsiders, 403 below the method's role
        self.tenant = get_tenant(self.actor, kwargs["tenant_slug"], self.required_role())

    def required_role(self) -> str:
        if self.action in self.action_roles:
            return self.action_roles[self.action]
        return self.read_role if self.request.method in SAFE_METHODS else self.write_role

    def base_queryset(self) -> QuerySet[Any]:
        return self.queryset.all() if self.queryset is not None else QuerySet()

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular introspection
            return self.base_queryset().none()
        return self.base_queryset().filter(**{self.tenant_field: self.tenant})


class AdminViewSetMixin(ActorMixin):
    """Admin-only resources (hosts)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        require_admin(self.actor)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (a tenant cannot sneak in ``privileged`` or ``cap_add``)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, f in self.fields.items() if not f.read_only})
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass
