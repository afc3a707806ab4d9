"""The one tenant-scoping helper every tenant resource uses.

``/api/v1/tenants/<slug>/<resource>/``: the tenant comes from the URL and is
resolved through :func:`hostpanel.tenants.access.get_tenant`, so a tenant the
caller is not a member of (or that its token is not for) is a 404; objects are
then looked up only inside that tenant's queryset (another tenant's object is
a 404 too); the method's role (``read_role``/``write_role``/``action_roles``)
is then required (a 403 when the member's role is lower).
"""

from __future__ import annotations

import copy
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.fields import Field
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.settings import api_settings

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
    # The model's ordering spelled out for one tenant's rows where Meta's sorts through a related
    # table (the tenant's slug, an app's tenant and name): the same order without the joins that
    # Django adds, and compiles again, on every list (empty: Meta's ordering). test_api_ordering.py.
    tenant_ordering: tuple[str, ...] = ()
    # What a list joins instead of the queryset's select_related, when that joins the tenant only
    # for the rows to carry it: a list's rows are the URL's tenant's, which is set on each row
    # instead (None: the queryset's own joins). test_api_ordering.py.
    list_select_related: tuple[str, ...] | None = None

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
        qs = self.base_queryset().filter(**{self.tenant_field: self.tenant})
        if self.list_select_related is not None and self.action == "list":
            qs = qs.select_related(None)
            if self.list_select_related:
                qs = qs.select_related(*self.list_select_related)
        return qs.order_by(*self.tenant_ordering) if self.tenant_ordering else qs

    def paginate_queryset(self, queryset: QuerySet[Any]) -> list[Any] | None:
        page = super().paginate_queryset(queryset)
        if page is not None and self.list_select_related is not None:
            for row in page:
                row.tenant = self.tenant  # the row's own tenant (get_queryset's filter), not joined
        return page


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


_FIELD_TEMPLATES: dict[type, dict[str, Field]] = {}


class ModelSerializer(serializers.ModelSerializer):
    """DRF's ModelSerializer whose fields are worked out from the model once per class.

    DRF works out every model field of a serializer anew for each instance (the model's
    introspection, each field's keyword arguments), three serializers per apps list. What it
    builds depends on the class alone (Meta, the declared fields, the model), so the first
    instance's result is kept, unbound, and each instance gets its own deep copy of it: fields
    copied as DRF copies its declared ones (test_serializer_fields.py).
    """

    def get_fields(self) -> dict[str, Field]:
        template = _FIELD_TEMPLATES.get(type(self))
        if template is None:
            template = _FIELD_TEMPLATES.setdefault(type(self), super().get_fields())
        elif self.url_field_name is None:  # what DRF's get_fields sets on the way
            self.url_field_name = api_settings.URL_FIELD_NAME
        return copy.deepcopy(template)


class StrictModelSerializer(StrictSerializer, ModelSerializer):
    pass
