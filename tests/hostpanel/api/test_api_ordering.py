"""Lists spelled out in one tenant's terms keep their answer: TenantScopedViewSet.tenant_ordering
gives the rows in the order of Meta's ordering (which sorts through the tenant's slug), and
list_select_related (the URL's tenant set on each row instead of joined) the same JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import Model, QuerySet
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from hostpanel.api.urls import router
from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor, record
from hostpanel.deployments import services as deployments
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.secrets import services as secrets
from hostpanel.secrets.models import Secret
from hostpanel.tenants.models import Membership, Role, Tenant
from hostpanel.volumes.models import Volume
from tests.hostpanel.factories import TenantFactory, UserFactory

NAMES = ["m", "b", "z", "a", "k"]  # made in this order, listed in another


def _admin() -> Actor:
    return Actor(user=UserFactory(is_staff=True, is_superuser=True))


def _secrets(tenant: Tenant) -> None:
    for name in NAMES:
        secrets.create_secret(_admin(), tenant, f"{name}{tenant.slug}", "v")


def _volumes(tenant: Tenant) -> None:
    for name in NAMES:
        Volume.objects.create(tenant=tenant, name=f"{name}{tenant.slug}", size_bytes=2**30)


def _members(tenant: Tenant) -> None:
    users = [UserFactory() for _ in NAMES]
    for user in reversed(users):  # the memberships' ids run against the users'
        Membership.objects.create(tenant=tenant, user=user, role=Role.VIEWER)


def _containers(tenant: Tenant) -> None:
    for name in NAMES[:3]:
        spec = deployments.AppSpec(image="busybox:latest", command=["sleep", "1"], replicas=2)
        deployments.create_app(_admin(), tenant, f"{name}app", spec)


def _audit(tenant: Tenant) -> None:
    for name in NAMES:
        record(_admin(), f"test.{name}", tenant=tenant, obj=tenant, message="héllo ✓")


# resource: (make a tenant's rows, the model's rows in Meta's order, a row's key in the list)
CASES: dict[str, tuple[Callable[[Tenant], None], Callable[[Tenant], QuerySet[Any]], str]] = {
    "secrets": (_secrets, lambda t: Secret.objects.filter(tenant=t), "name"),
    "volumes": (_volumes, lambda t: Volume.objects.filter(tenant=t), "id"),
    "members": (_members, lambda t: Membership.objects.filter(tenant=t), "id"),
    "containers": (_containers, lambda t: Replica.objects.filter(app__tenant=t), "id"),
    "audit": (_audit, lambda t: AuditLog.objects.filter(tenant=t), "id"),
}
VIEWSETS = {
    prefix.rsplit("/", 1)[1]: viewset for prefix, viewset, _ in router.registry if "<tenant_slug>" in prefix
}


def test_every_spelled_out_ordering_is_checked_here() -> None:
    spelled = {
        name
        for name, viewset in VIEWSETS.items()
        if getattr(viewset, "tenant_ordering", ())
        or getattr(viewset, "list_select_related", None) is not None
    }
    assert spelled == set(CASES)


@pytest.mark.parametrize("resource", sorted(CASES))
def test_a_list_keeps_the_models_order(
    resource: str, owner_token: tuple[Tenant, APIClient], host: Host
) -> None:
    tenant, client = owner_token
    make, rows, key = CASES[resource]
    for other in (TenantFactory(slug="aaa"), tenant, TenantFactory(slug="zzz")):
        make(other)
    expected: list[Model] = list(rows(tenant))
    assert len(expected) >= 5
    listed = client.get(f"/api/v1/tenants/{tenant.slug}/{resource}/").json()["results"]
    assert [row[key] for row in listed] == [getattr(obj, key) for obj in expected]
    viewset = VIEWSETS[resource]
    full = viewset.queryset.filter(pk__in=[obj.pk for obj in expected])  # as joined before
    by_key = {getattr(obj, key): obj for obj in full}
    serialized = viewset.serializer_class([by_key[getattr(obj, key)] for obj in expected], many=True).data
    assert listed == json.loads(JSONRenderer().render(serialized))
